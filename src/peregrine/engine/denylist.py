"""Queries that killed their worker are refused for a while (osquery's denylist idea).

A query that blew the memory limit or hung past the hard time-out will probably do it again; on an
agent it would do it on every schedule. The list is a small JSON file keyed by the SHA-256 of the
SQL text, written atomically so a crash cannot corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from peregrine.engine.errors import QueryDenied

DEFAULT_SECONDS = 3600.0


def default_state_dir() -> Path:
    """Where local state lives: ``$PEREGRINE_STATE_DIR`` or the XDG state directory."""
    configured = os.environ.get("PEREGRINE_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "peregrine"


class Denylist:
    def __init__(self, path: Path | None = None, seconds: float = DEFAULT_SECONDS) -> None:
        self.path = path or default_state_dir() / "denylist.json"
        self.seconds = seconds

    @staticmethod
    def key(sql: str) -> str:
        return hashlib.sha256(" ".join(sql.split()).encode()).hexdigest()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".denylist.")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        Path(tmp).replace(self.path)

    def add(self, sql: str, reason: str) -> None:
        now = time.time()
        data = {k: v for k, v in self._load().items() if v.get("until", 0) > now}
        data[self.key(sql)] = {
            "until": now + self.seconds,
            "since": now,
            "reason": reason,
            "sql": sql[:500],
        }
        self._save(data)

    def entry(self, sql: str) -> dict[str, Any] | None:
        entry = self._load().get(self.key(sql))
        if entry and entry.get("until", 0) > time.time():
            return dict(entry)
        return None

    def check(self, sql: str) -> None:
        """Raise :class:`QueryDenied` if ``sql`` killed a worker recently."""
        entry = self.entry(sql)
        if entry is None:
            return
        left = entry["until"] - time.time()
        raise QueryDenied(
            f"this query killed its worker ({entry['reason']}) and is refused for another "
            f"{left / 60:.0f} min; fix the query (add a time-out, a narrower pattern, LIMIT), "
            "or run it anyway with --ignore-denylist"
        )

    def remove(self, sql: str) -> bool:
        data = self._load()
        if data.pop(self.key(sql), None) is None:
            return False
        self._save(data)
        return True

    def clear(self) -> None:
        self._save({})
