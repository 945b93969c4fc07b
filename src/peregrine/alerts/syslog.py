"""Alerts to syslog as RFC 5424 messages, over UDP (one datagram each) or TCP (octet-counted
frames, RFC 6587), with the alert's JSON as the message and its fields as structured data."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

from .forward import Sink

#: RFC 5424 severities by alert severity; the facility is local0 (16) unless configured.
_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_SD_ID = "peregrine@32473"


def _sd_value(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def rfc5424(document: dict[str, Any], app_name: str, facility: int = 16) -> bytes:
    """One alert as an RFC 5424 message."""
    priority = facility * 8 + _SEVERITY.get(document["severity"], 4)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(document["time"]))
    stamp += f".{int(document['time'] % 1 * 1_000_000):06d}Z"
    host = socket.gethostname()[:255] or "-"
    params = " ".join(
        f'{name}="{_sd_value(document[name])}"'
        for name in ("alert_id", "rule_id", "severity", "client_id", "hostname")
    )
    body = json.dumps(document, separators=(",", ":"))
    message = f"<{priority}>1 {stamp} {host} {app_name} - alert [{_SD_ID} {params}] {body}"
    return message.encode()


class SyslogSink(Sink):
    name = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: str = "udp",
        app_name: str = "peregrine",
        facility: int = 16,
        timeout: float = 5.0,
        queue_size: int = 1000,
    ) -> None:
        super().__init__(queue_size)
        self._address = (host, port)
        self._protocol = protocol
        self._app_name = app_name
        self._facility = facility
        self._timeout = timeout
        self._udp: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None

    async def deliver(self, document: dict[str, Any]) -> None:
        message = rfc5424(document, self._app_name, self._facility)
        if self._protocol == "udp":
            if self._udp is None:
                family = socket.getaddrinfo(*self._address, type=socket.SOCK_DGRAM)[0][0]
                self._udp = socket.socket(family, socket.SOCK_DGRAM)
                self._udp.setblocking(False)
            await asyncio.get_running_loop().sock_sendto(self._udp, message, self._address)
            return
        frame = str(len(message)).encode() + b" " + message
        for attempt in range(2):  # a connection the receiver closed is opened once more
            try:
                if self._reader is not None and self._reader.at_eof():
                    await self.shut()  # the receiver hung up: a write would vanish
                writer = self._writer or await self._connect()
                writer.write(frame)
                await asyncio.wait_for(writer.drain(), self._timeout)
                return
            except (OSError, TimeoutError):
                await self.shut()
                if attempt:
                    raise

    async def _connect(self) -> asyncio.StreamWriter:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(*self._address), self._timeout
        )
        self._reader, self._writer = reader, writer
        return writer

    async def shut(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None
