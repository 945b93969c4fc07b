"""Is this frontend fit for traffic? What a balancer asks before sending it agents or analysts.

A frontend is *ready* when its datastore answers, its filestore takes a write and it is not
draining. The bus (Redis in a cluster) is reported but does not decide: agents' sessions,
results and the datastore do not need it, so while it is away the frontend stays in the
balancer's pool, *degraded* (notices between frontends are dropped; ``resync.py`` repairs
what they would have done once it is back). Were it to decide, one Redis restart would take
every frontend out of the pool at once and refuse every agent for nothing.

The answer is computed at most once a second however often it is asked, one check at a time,
each part with a time-out: the health
endpoints are unauthenticated, so a flood of probes must not turn into a flood of database
queries, and a hung shared mount must not hang the probe. The answer names each part's state
in a word, never an error text (which could hold a database URL or a path).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

if TYPE_CHECKING:
    from peregrine.server.app import Server

#: Seconds an answer is reused; a balancer checking every 2 s always gets a fresh one.
CACHE_SECONDS = 1.0
#: Seconds one part may take before it counts as failed.
CHECK_TIMEOUT = 2.0

OK = "ok"
#: Parts whose failure leaves the frontend ready, only degraded.
OPTIONAL = frozenset({"bus"})


@dataclass(frozen=True)
class ReadinessReport:
    """The checks' outcome: ``ready`` and each part's state (``ok`` or what is wrong)."""

    ready: bool
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        """Ready, with an optional part (the bus) failing."""
        return self.ready and any(v != OK for v in self.checks.values())

    def body(self) -> dict[str, Any]:
        status = "degraded" if self.degraded else "ready" if self.ready else "not ready"
        return {"status": status, "checks": self.checks}


class Readiness:
    """The cached readiness of one frontend (``Server``)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._report: ReadinessReport | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        #: A check still running after its time-out (a hung mount) is waited on again next
        #: time instead of starting another thread beside it.
        self._running: dict[str, asyncio.Future[None]] = {}
        # Random, not the pid: frontends in containers on one shared mount may share a pid.
        self._probe = f".ready-{secrets.token_hex(8)}"

    async def report(self) -> ReadinessReport:
        """The current report, computed again only when the last is older than a second."""
        async with self._lock:
            if not self.server.connections.accepting and self._said_accepting():
                self._report = None  # draining began: say so now, not a second late
            if self._report is None or time.monotonic() - self._at >= CACHE_SECONDS:
                self._report = await self._check()
                self._at = time.monotonic()
            return self._report

    def _said_accepting(self) -> bool:
        return self._report is not None and self._report.checks.get("accepting") == OK

    async def _check(self) -> ReadinessReport:
        checks = {
            "datastore": await self._part("datastore", self._read_datastore),
            "filestore": await self._part("filestore", self._write_probe),
        }
        # The bus tracks its own connection (Redis); a bus that cannot fail says it is healthy.
        checks["bus"] = OK if getattr(self.server.bus, "healthy", True) else "unavailable"
        checks["accepting"] = OK if self.server.connections.accepting else "draining"
        required = [v for k, v in checks.items() if k not in OPTIONAL]
        return ReadinessReport(all(v == OK for v in required), checks)

    async def _part(self, name: str, check: Callable[[], None]) -> str:
        """``ok``, ``timeout`` or ``unavailable``: one part's outcome, in a word."""
        running = self._running.get(name)
        if running is None or running.done():
            running = self._running[name] = asyncio.ensure_future(asyncio.to_thread(check))
            running.add_done_callback(_consume)
        try:
            await asyncio.wait_for(asyncio.shield(running), CHECK_TIMEOUT)
        except TimeoutError:
            return "timeout"
        except Exception:
            return "unavailable"
        return OK

    def _read_datastore(self) -> None:
        self.server.datastore.revision()

    def _write_probe(self) -> None:
        """Write, flush and remove a small file: a full, read-only or hung mount fails here."""
        path = Path(self.server.filestore.root) / self._probe
        with open(path, "wb") as probe:
            probe.write(b"ready\n")
            probe.flush()
            os.fsync(probe.fileno())
        path.unlink()


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a finished check's exception (it was reported as a word already)."""
    if not future.cancelled():
        future.exception()


#: Paths the agent listener answers as plain HTTP for a balancer's check of the agent port.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


async def answer_on_agent_port(
    readiness: Readiness, connection: ServerConnection, path: str
) -> Response:
    """``/healthz`` or ``/readyz`` asked on the agent port (HAProxy ``check-ssl``): the same
    answers as on the API port, as a websockets ``Response``, so the check goes through the
    very listener and TLS set-up agents use."""
    if path == "/healthz":
        return connection.respond(200, json.dumps({"status": "alive"}) + "\n")
    report = await readiness.report()
    return connection.respond(200 if report.ready else 503, json.dumps(report.body()) + "\n")
