"""Run one collection request on the agent, turning its results into spooled messages.

The job runs in a thread. Rows are batched by count and by time; every message goes into the
spool first (durable) and the connection sends it from there, so a lost connection only delays
the results. Files that ``upload()`` copied are announced with ``UploadStart``; the connection
streams them, resumable, and the job waits for them before it reports the flow finished.

Within the start's hold (``outbox.START_HOLD_SECONDS``) only the start, the end and upload
announcements wake the sender: a collection that ends by then goes out in one frame, stored in
one run and acknowledged once, so its end does not queue at the server behind its own rows
sent a few milliseconds earlier. The sender's timer for the held start sends what came by
then; past the hold every message wakes it, as rows stream. The spool stores a small collection
in two commits: the start with the flow, then the last rows, status and end together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from peregrine.agent.outbox import START_HOLD_SECONDS
from peregrine.agent.spool import PayloadFactory, PendingUpload, Spool, SpoolFull
from peregrine.agent.stats import STATS
from peregrine.artifacts.loader import ArtifactError, Definition
from peregrine.artifacts.model import Artifact
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner, SourceOutcome
from peregrine.engine.context import SKIPPED_UPLOADS, QueryLimits, UploadSink
from peregrine.engine.registry import Registry
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    CollectionRequest,
    FlowFinished,
    LogBatch,
    LogEntry,
    ResultBatch,
    SourceFinished,
    UploadStart,
    encode,
)

if TYPE_CHECKING:
    from peregrine.engine.spare import WorkerSource

log = logging.getLogger(__name__)

#: How long a finished collection waits for its uploads to reach the server.
UPLOAD_WAIT_SECONDS = 24 * 3600.0
#: A batch is cut once its rows reach this many bytes, so every message stays well under the
#: protocol's frame limit (a larger one would be refused by the server again and again).
BATCH_BYTES = 1024 * 1024
#: A single row larger than this cannot fit in a message at all; it is left out, with an error.
MAX_ROW_BYTES = MAX_MESSAGE_BYTES - 64 * 1024
#: Warnings of one source that go into the collection's log; the rest are counted (the log says
#: how many, and the flow's status counts them all).
MAX_LOGGED_WARNINGS = 100

_row_encoder = msgspec.msgpack.Encoder()
#: Builds a flow message once its ``seq`` is known.
Build = Callable[[int], Any]


class CollectionJob:
    def __init__(
        self,
        request: CollectionRequest,
        spool: Spool,
        work_dir: Path,
        wake_sender: Callable[[], None],
        uploads_settled: Callable[[str], bool],
        workers: WorkerSource | None = None,
        stored_start: float | None = None,
    ) -> None:
        self.request = request
        self.workers = workers
        self.spool = spool
        self.work_dir = work_dir / request.flow_id
        self.wake_sender = wake_sender
        self.uploads_settled = uploads_settled
        self.cancelled = threading.Event()
        self.shutting_down = False
        self.runner: ArtifactRunner | None = None
        #: The last source's closing messages (rows, logs, status), stored with what comes
        #: next: most often the flow's end, in the same commit.
        self._closing: list[Build] = []
        #: When (monotonic) the flow's start was stored, before the sender could see it.
        self.stored_start = stored_start
        #: Until then, messages between the start and the end do not wake the sender: the
        #: hold's timer, which runs from when it saw the start, fires at that time or later.
        self._quiet_until = 0.0

    # -- spooling ---------------------------------------------------------------------------

    def _spool(self, build: Build, wake: bool | None = None) -> int:
        """Store a flow message durably, waiting while the spool is full. ``wake``: tell the
        sender (None: unless within the start's hold, when the end or the hold's timer will)."""
        return self._spool_all([build], wake)[0]

    def _spool_all(
        self, builds: list[Build], wake: bool | None = None, end: bool = False
    ) -> list[int]:
        """``_spool`` for messages that follow each other, in one commit (one ``fsync``);
        ``end``: the flow's last, marked done in the spool with it. Closing messages held
        back go first."""
        builds, self._closing = [*self._closing, *builds], []
        if not builds:
            return []
        factories = [_encoded(build) for build in builds]
        while True:
            try:
                seqs = self.spool.append_all(self.request.flow_id, factories, finish=end)
                break
            except SpoolFull:
                if self.cancelled.wait(0.5):
                    raise
        if wake or (wake is None and time.monotonic() >= self._quiet_until):
            self.wake_sender()
        return seqs

    def _log(self, level: str, *messages: str) -> None:
        """Log ``messages`` in one message to the server."""
        self._spool(self._log_entry(level, *messages))

    def _log_entry(self, level: str, *messages: str) -> Build:
        """The message that logs ``messages``, once its ``seq`` is known."""
        now = time.time()
        entries: list[LogEntry] = [
            {"time": now, "level": level, "message": message} for message in messages
        ]
        return lambda seq: LogBatch(flow_id=self.request.flow_id, seq=seq, entries=entries)

    def _warning_logs(self, outcome: SourceOutcome) -> list[Build]:
        """The source's first warnings, then how many more there were (none: no message)."""
        kept = outcome.warnings[: len(outcome.warnings) - (1 if outcome.warnings_dropped else 0)]
        logged = kept[:MAX_LOGGED_WARNINGS]
        more = outcome.warning_count - len(logged)
        if more:
            name = f"{outcome.artifact}/{outcome.source or 'default'}"
            logged.append(
                f"{name}: {more} more warnings were not logged (a source logs its first "
                f"{MAX_LOGGED_WARNINGS})"
            )
        return [self._log_entry("warning", *logged)] if logged else []

    # -- running ----------------------------------------------------------------------------

    def cancel(self, shutdown: bool = False) -> None:
        """Stop the collection. ``shutdown``: the agent is stopping, so the flow is not
        reported at all now; the next start reports it as interrupted."""
        self.shutting_down = shutdown
        self.cancelled.set()
        if self.runner is not None:
            self.runner.cancel()

    def run(self) -> None:
        flow_id = self.request.flow_id
        log.info("collection %s started", flow_id)
        # The start (seq 1) was stored with the flow when the request came: agent._start_job.
        self._quiet_until = (self.stored_start or time.monotonic()) + START_HOLD_SECONDS
        status, error = "finished", None
        try:
            status, error = self._collect()
        except Exception as exc:  # a bug must still end the flow, not leave it running
            log.exception("collection %s failed", flow_id)
            status, error = "error", f"{type(exc).__name__}: {exc}"
        if self.shutting_down:
            self._spool_all([])  # what the last source closed with is kept, not its end
            return
        if self.cancelled.is_set():
            status, error = "cancelled", "cancelled by the server"
        self._spool_all(
            [
                lambda seq: FlowFinished(
                    flow_id=flow_id, seq=seq, status=status, error=error, finished=time.time()
                )
            ],
            wake=True,
            end=True,
        )
        log.info("collection %s ended: %s", flow_id, status)

    def _collect(self) -> tuple[str, str | None]:
        request = self.request
        # No plugins and no engine: every query, preconditions too, runs in a worker. The default
        # repository would load all the plugins into this process, and an engine SQLite (apsw).
        repository = ArtifactRepository(registry=Registry())
        for raw in request.definitions:
            artifact = msgspec.convert(raw, Artifact)
            repository.add(Definition(artifact, {}))
        self.runner = runner = ArtifactRunner(
            repository,
            permissions=frozenset(request.permissions),
            isolated=True,
            isolated_preconditions=True,
            workers=self.workers,
        )
        limits = QueryLimits(
            timeout=request.timeout, max_rows=request.max_rows, cpu_limit=request.cpu_limit
        )
        upload_dir = self.work_dir / "uploads"
        upload_dir.mkdir(parents=True, exist_ok=True)
        sink = UploadSink(str(upload_dir), request.max_upload_bytes)
        announced = skipped = 0
        failures: list[str] = []
        for index, call in enumerate(request.artifacts):
            try:
                planned = runner.plan(call.name, call.parameters, limits)
            except ArtifactError as exc:
                self._log("error", str(exc))
                failures.append(str(exc))
                continue
            for source in planned.artifact.sources:
                if self.cancelled.is_set():
                    return "cancelled", None
                outcome = SourceOutcome(call.name, source.name)
                # Its last rows, logs and status: one commit (the last source's: with the end).
                tail = self._stream(outcome, runner.run_source(planned, source, outcome, sink))
                tail += self._warning_logs(outcome)
                STATS.source_done(outcome.status, outcome.error)
                skipped_here = _count_lines(upload_dir / SKIPPED_UPLOADS) - skipped
                skipped += skipped_here
                if outcome.error and outcome.status == "error":
                    failures.append(f"{call.name}/{source.name}: {outcome.error}")
                    where = f"{call.name}/{source.name or 'default'}"
                    tail.append(self._log_entry("error", f"{where}: {outcome.error}"))

                def finished(
                    seq: int, o: SourceOutcome = outcome, skipped: int = skipped_here
                ) -> SourceFinished:
                    return SourceFinished(
                        flow_id=request.flow_id,
                        seq=seq,
                        artifact=o.artifact,
                        source=o.source,
                        status=o.status,
                        rows=o.rows,
                        error=o.error,
                        elapsed=o.elapsed,
                        warnings=o.warning_count,
                        uploads_skipped=skipped,
                    )

                self._closing = [*tail, finished]
                last_call = index == len(request.artifacts) - 1
                if not (last_call and source is planned.artifact.sources[-1]):
                    self._spool_all([])  # a source still to run: its status goes now
                announced = self._announce_uploads(upload_dir, announced)
        self._wait_for_uploads()
        if failures:
            return "error", "; ".join(failures)[:2000]
        return "finished", None

    def _stream(self, outcome: SourceOutcome, rows: Iterator[tuple[Any, ...]]) -> list[Build]:
        """Batch rows by count and by time into ResultBatch messages; the last batch is
        returned unspooled (none: empty), to be stored with what follows it."""
        batch: list[list[Any]] = []
        size = 0
        last = time.monotonic()

        def take() -> Build:
            nonlocal batch, size
            rows_out, batch, size = batch, [], 0
            STATS.rows(len(rows_out))
            return lambda seq: ResultBatch(
                flow_id=self.request.flow_id,
                seq=seq,
                artifact=outcome.artifact,
                source=outcome.source,
                columns=outcome.columns,
                rows=rows_out,
            )

        def flush() -> None:
            nonlocal last
            if batch:
                self._spool(take())
            last = time.monotonic()

        for row in rows:
            values = list(row)
            row_bytes = len(_row_encoder.encode(values))
            if row_bytes > MAX_ROW_BYTES:
                self._log(
                    "error",
                    f"{outcome.artifact}/{outcome.source or 'default'}: a row of {row_bytes} "
                    f"bytes is over the {MAX_ROW_BYTES} byte message limit and was not sent "
                    "(collect large data with upload())",
                )
                continue
            if size + row_bytes > BATCH_BYTES:
                flush()
            batch.append(values)
            size += row_bytes
            if (
                len(batch) >= self.request.batch_rows
                or time.monotonic() - last >= self.request.batch_seconds
            ):
                flush()
        return [take()] if batch else []

    def _announce_uploads(self, upload_dir: Path, already: int) -> int:
        """Announce the files ``upload()`` stored since the last call; return the new count."""
        index = upload_dir / "uploads.jsonl"
        if not index.exists():
            return already
        entries = [json.loads(line) for line in index.read_text().splitlines() if line]
        for entry in entries[already:]:
            upload_id = hashlib.sha256(
                f"{self.request.flow_id}:{entry['stored']}".encode()
            ).hexdigest()[:16]
            local = str(upload_dir / entry["stored"])
            holder: dict[str, bytes] = {}

            def announce(
                seq: int,
                e: dict[str, Any] = entry,
                uid: str = upload_id,
                holder: dict[str, bytes] = holder,
            ) -> Any:
                message = UploadStart(
                    flow_id=self.request.flow_id,
                    seq=seq,
                    upload_id=uid,
                    path=e["path"],
                    size=e["size"],
                    sha256=e["sha256"],
                )
                holder["bytes"] = encode(message)
                return message

            # Known to the spool's upload table before the sender is woken for it, so the
            # file is found when the server asks for it.
            self._spool(announce, wake=False)
            self.spool.add_upload(
                PendingUpload(
                    upload_id, self.request.flow_id, local, entry["size"], holder["bytes"]
                )
            )
            self.wake_sender()
        return len(entries)

    def _wait_for_uploads(self) -> None:
        deadline = time.monotonic() + UPLOAD_WAIT_SECONDS
        if not self.uploads_settled(self.request.flow_id):
            self._spool_all([])  # the last source's status is not held while files go
        while not self.uploads_settled(self.request.flow_id):
            if self.cancelled.wait(0.2) or time.monotonic() > deadline:
                return
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _encoded(build: Build) -> PayloadFactory:
    return lambda seq: encode(build(seq))


def _count_lines(path: Path) -> int:
    """Lines of a file that may not exist yet."""
    try:
        with open(path, "rb") as lines:
            return sum(1 for _ in lines)
    except FileNotFoundError:
        return 0
