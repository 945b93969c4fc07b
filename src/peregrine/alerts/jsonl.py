"""Alerts as JSON lines appended to a file, for a SIEM's file shipper to pick up."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from .forward import Sink


class JsonLinesSink(Sink):
    name = "jsonl"

    def __init__(self, path: Path, *, queue_size: int = 1000) -> None:
        super().__init__(queue_size)
        self.path = path

    async def deliver(self, document: dict[str, Any]) -> None:
        line = json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._append, line.encode())

    def _append(self, data: bytes) -> None:
        # Opened per alert, so a shipper's rotation (rename, then a new file) just works.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
