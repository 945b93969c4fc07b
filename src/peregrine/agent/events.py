"""The agent's event runner: the assigned event artifacts, each running for good in its own
query worker, their rows spooled in batches.

Each artifact runs in a thread of its own (``EventWorker``), its sources each in a query worker
process under the assignment's CPU and memory limits (the collections' worker and watchdog:
``engine/worker.py``). A worker that ends — its query failed, the watchdog killed it over its
memory limit, or it simply stopped — is restarted after a backoff (1 s doubling to 5 min, back
to 1 s after a healthy minute), and every change of state is reported (``EventStatus``).

Rows are batched (``batch_rows`` rows or ``batch_seconds``, whichever comes first) into
``EventRows`` in the spool under the stream ``events:<artifact>``, whose sequence numbers count
rows and survive restarts; the connection sends them from there and drops them only when the
server acknowledges them, so nothing is lost and nothing doubled. A new assignment set stops the
artifacts no longer in it or changed, starts the new ones, and leaves the others running.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from peregrine.agent.collection import BATCH_BYTES, MAX_ROW_BYTES
from peregrine.agent.spool import Spool, SpoolFull
from peregrine.artifacts.loader import ArtifactError, Definition
from peregrine.artifacts.model import Artifact, Source
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, Planned, SourceOutcome
from peregrine.engine.context import QueryLimits
from peregrine.engine.registry import Registry
from peregrine.protocol.messages import (
    EVENT_STREAM_PREFIX,
    EventAssignments,
    EventRows,
    EventStatus,
    encode,
)

if TYPE_CHECKING:
    from peregrine.engine.spare import WorkerSource

log = logging.getLogger(__name__)

STREAM_PREFIX = EVENT_STREAM_PREFIX
#: Restart backoff: the first wait, the longest, and how long a run must last to reset it.
BACKOFF_MIN = 1.0
BACKOFF_MAX = 300.0
HEALTHY_SECONDS = 60.0
#: Rows waiting between a source's query and the batcher (then the query's pipe pushes back).
QUEUE_ROWS = 10_000

_row_encoder = msgspec.msgpack.Encoder()

Report = Callable[[EventStatus], None]


def stream_key(artifact: str) -> str:
    """The spool key (and the ``Ack``'s ``flow_id``) of an artifact's event stream."""
    return STREAM_PREFIX + artifact


@dataclass(frozen=True)
class EventSpec:
    """Everything that decides how one artifact runs; a worker restarts only when it changes."""

    artifact: str
    parameters_json: str
    definitions_json: str
    permissions: tuple[str, ...]
    batch_rows: int
    batch_seconds: float
    cpu_limit: float | None
    max_memory_mb: int | None
    definitions: list[dict[str, Any]] = field(compare=False, hash=False)

    @property
    def parameters(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.parameters_json)
        return value


def specs(message: EventAssignments) -> dict[str, EventSpec]:
    """One spec per assigned artifact. Its own definition takes part in the comparison, so an
    edited artifact restarts; the definitions of artifacts it uses as tables do not."""
    own = {d.get("name"): d for d in message.definitions}
    out: dict[str, EventSpec] = {}
    for call in message.artifacts:
        definition = own.get(call.name, {})
        out[call.name] = EventSpec(
            artifact=call.name,
            parameters_json=json.dumps(call.parameters, sort_keys=True, default=str),
            definitions_json=hashlib.sha256(
                json.dumps(definition, sort_keys=True, default=str).encode()
            ).hexdigest(),
            permissions=tuple(sorted(message.permissions)),
            batch_rows=message.batch_rows,
            batch_seconds=message.batch_seconds,
            cpu_limit=message.cpu_limit,
            max_memory_mb=message.max_memory_mb,
            definitions=message.definitions,
        )
    return out


class EventRunner:
    """Keeps the assigned event artifacts running: ``apply`` a new set, ``stop`` them all."""

    def __init__(
        self,
        spool: Spool,
        wake_sender: Callable[[], None],
        report: Report,
        spares: WorkerSource | None = None,
    ) -> None:
        self.spool = spool
        self.wake_sender = wake_sender
        self.report = report
        self.spares = spares
        self.version: int | None = None
        self.workers: dict[str, EventWorker] = {}
        self._lock = threading.Lock()

    def apply(self, message: EventAssignments) -> None:
        """Run exactly the artifacts of ``message``: stop the ones gone or changed (waiting
        for them), start the new ones, leave the unchanged ones running."""
        wanted = specs(message)
        with self._lock:
            self.version = message.version
            stopping = [
                worker for name, worker in self.workers.items() if wanted.get(name) != worker.spec
            ]
            for worker in stopping:
                worker.stop()
                del self.workers[worker.spec.artifact]
            for worker in stopping:
                worker.join(10.0)
                if worker.spec.artifact not in wanted:
                    self.report(_status(worker.spec.artifact, "stopped", worker.restarts))
            for name, spec in wanted.items():
                if name not in self.workers:
                    worker = EventWorker(
                        spec, self.spool, self.wake_sender, self.report, self.spares
                    )
                    self.workers[name] = worker
                    worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker (the agent is stopping); what they batched is spooled first."""
        with self._lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class EventWorker:
    """One event artifact: its sources' queries, restarted with backoff when they end."""

    def __init__(
        self,
        spec: EventSpec,
        spool: Spool,
        wake_sender: Callable[[], None],
        report: Report,
        spares: WorkerSource | None = None,
    ) -> None:
        self.spec = spec
        self.spares = spares
        self.spool = spool
        self.wake_sender = wake_sender
        self.report = report
        self.stream = stream_key(spec.artifact)
        self.restarts = 0
        self.stopped = threading.Event()
        self._runner: ArtifactRunner | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"events-{spec.artifact}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        runner = self._runner
        if runner is not None:
            runner.cancel()  # each query is told to stop, and killed 0.5 s later if it has not

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF_MIN
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                error = self._attempt()
            except ArtifactError as exc:  # it cannot run as assigned: retrying will not help
                self.report(_status(self.spec.artifact, "failed", self.restarts, str(exc)))
                return
            except Exception as exc:  # a bug must not end the artifact for good
                log.exception("event artifact %s failed", self.spec.artifact)
                error = f"{type(exc).__name__}: {exc}"
            if self.stopped.is_set():
                return
            if time.monotonic() - started >= HEALTHY_SECONDS:
                delay = BACKOFF_MIN
            self.restarts += 1
            log.warning(
                "event artifact %s ended (%s); restarting in %.0f s",
                self.spec.artifact, error, delay,
            )  # fmt: skip
            self.report(_status(self.spec.artifact, "restarting", self.restarts, error))
            if self.stopped.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)

    def _attempt(self) -> str:
        """Run every source until one ends (or the worker is stopped); why it ended."""
        spec = self.spec
        repository = ArtifactRepository(registry=Registry())  # every query runs in a worker
        for raw in spec.definitions:
            repository.add(Definition(msgspec.convert(raw, Artifact), {}))
        runner = ArtifactRunner(
            repository,
            permissions=frozenset(spec.permissions),
            isolated=True,
            isolated_preconditions=True,
            workers=self.spares,
        )
        overrides = QueryLimits(cpu_limit=spec.cpu_limit, max_memory_mb=spec.max_memory_mb)
        planned = runner.plan(spec.artifact, spec.parameters, overrides, events=True)
        self._runner = runner
        if self.stopped.is_set():
            runner.cancel()
        rows: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_ROWS)
        pumps = [
            threading.Thread(
                target=self._pump,
                args=(runner, planned, source, rows),
                name=f"events-{spec.artifact}-{source.name or 'default'}",
                daemon=True,
            )
            for source in planned.artifact.sources
        ]
        for pump in pumps:
            pump.start()
        self.report(_status(spec.artifact, "running", self.restarts))
        try:
            return self._batch(planned, rows)
        finally:
            runner.cancel()
            for pump in pumps:
                while pump.is_alive():  # a pump blocked on a full queue needs it drained
                    with contextlib.suppress(queue.Empty):
                        rows.get(timeout=0.1)
            self._runner = None

    def _pump(
        self,
        runner: ArtifactRunner,
        planned: Planned,
        source: Source,
        rows: queue.Queue[tuple[str, Any]],
    ) -> None:
        outcome = SourceOutcome(planned.artifact.name, source.name)
        try:
            for row in runner.run_source(planned, source, outcome):
                rows.put(("row", (outcome, row)))
        finally:
            rows.put(("end", outcome))

    def _batch(self, planned: Planned, rows: queue.Queue[tuple[str, Any]]) -> str:
        """Cut the sources' rows into batches by count, size and time; return when a source
        ends, with why."""
        batches: dict[str, _Batch] = {}
        while True:
            due = min((b.due for b in batches.values() if b.rows), default=None)
            wait = 0.5 if due is None else max(0.0, due - time.monotonic())
            try:
                kind, item = rows.get(timeout=wait)
            except queue.Empty:
                kind, item = "tick", None
            now = time.monotonic()
            if kind == "row":
                outcome, row = item
                batch = batches.setdefault(outcome.source, _Batch(outcome, self.spec))
                values = list(row)
                size = len(_row_encoder.encode(values))
                if size > MAX_ROW_BYTES:
                    log.warning("event artifact %s: a %d-byte row left out", self.stream, size)
                    continue
                if batch.size + size > BATCH_BYTES:
                    self._flush(batch)  # every message stays well under the frame limit
                if batch.add(values, size, now):
                    self._flush(batch)
            elif kind == "end":
                for batch in batches.values():
                    self._flush(batch)
                outcome = item
                if outcome.error:
                    return str(outcome.error)
                return f"the query of source {outcome.source or 'default'!r} ended"
            for batch in batches.values():
                if batch.rows and now >= batch.due:
                    self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        if not batch.rows:
            return
        rows, batch.rows, batch.size = batch.rows, [], 0
        outcome, stream, cut = batch.outcome, self.stream, time.time()

        def message(seq: int) -> bytes:
            return encode(
                EventRows(
                    stream=stream, seq=seq, artifact=outcome.artifact, source=outcome.source,
                    time=cut, columns=outcome.columns, rows=rows,
                )
            )  # fmt: skip

        while True:
            try:
                self.spool.open_stream(stream)  # again: a clone's clear() forgets streams
                self.spool.append(stream, message, span=len(rows))
                break
            except SpoolFull:
                # The server has been away for long: hold the queries (their pipes push
                # back) until the spool has room, unless the worker is being stopped.
                if self.stopped.wait(0.5):
                    log.warning("event artifact %s: spool full, %d rows dropped", stream, len(rows))
                    return
        self.wake_sender()


class _Batch:
    """Rows of one source waiting to be spooled."""

    def __init__(self, outcome: SourceOutcome, spec: EventSpec) -> None:
        self.outcome = outcome
        self.spec = spec
        self.rows: list[list[Any]] = []
        self.size = 0
        self.started = time.monotonic()
        self.due = self.started + spec.batch_seconds

    def add(self, row: list[Any], size: int, now: float) -> bool:
        """Take a row of ``size`` encoded bytes; True when the batch is full."""
        if not self.rows:
            self.started, self.due = now, now + self.spec.batch_seconds
        self.rows.append(row)
        self.size += size
        return len(self.rows) >= self.spec.batch_rows or self.size >= BATCH_BYTES


def _status(artifact: str, state: str, restarts: int, error: str | None = None) -> EventStatus:
    return EventStatus(
        artifact=artifact,
        state=state,
        restarts=restarts,
        error=None if error is None else error[:4000],
        time=time.time(),
    )
