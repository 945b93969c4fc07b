r"""Store what agents send: result rows, logs, source and flow status, uploads.

Every flow message is written to the filestore and then recorded in the datastore with its
``seq``; only then is it acknowledged. Both stores ignore a ``seq`` they already have, so an agent
resending after a crash (either side's) or a lost connection causes no duplicate. When the
filestore is full, nothing is acknowledged and the agent is told to hold its spool (the session
then stores nothing more of that flow until the refused message comes again: see
``AgentSession``).

The file part of every session's run waiting goes into one durable batch of the filestore
(``file_batches.py``: two sync rounds for all of them, not about five ``fsync`` calls per new flow);
datastore work into the datastore's group commit, so the counts of many sessions' messages cost
one durable commit. ``upload_chunk`` blocks (``store_chunk`` runs it in a file thread).

An announced upload larger than the server's ``limits.max_upload_bytes`` or its collection's
``max_upload_bytes`` is refused before anything is reserved: the agent is told (``UploadResume``
with ``refused``) and the flow's log says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from peregrine.datastore import (
    CANCELLED,
    ERROR,
    FINISHED,
    IN_PROGRESS,
    Datastore,
    FlowRecord,
    FlowStep,
    StepResult,
)
from peregrine.filestore import DurableBatch, Filestore, StorageFull, UploadCorrupt
from peregrine.metrics.ingestion import count_chunk, count_stored
from peregrine.protocol.messages import (
    FlowFinished,
    FlowMessage,
    FlowStarted,
    LogBatch,
    ResultBatch,
    SourceFinished,
    UploadChunk,
    UploadStart,
)

from .file_batches import FileBatcher

log = logging.getLogger(__name__)

_FLOW_STATES = {"finished": FINISHED, "error": ERROR, "cancelled": CANCELLED}


class NotYourFlow(Exception):
    """An agent wrote to a collection that is not its own (or does not exist)."""


@dataclass
class _Files:
    """What the filestore's part of a message produced, for the datastore's part."""

    written: int = 0
    resume_offset: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    #: Why an announced upload was refused (then written to the flow's log).
    refused: str | None = None


_WITH_FILES = (ResultBatch, LogBatch, UploadStart, FlowFinished)
#: A run's file parts, and the StorageFull that stopped it (its later messages unstored).
_FilesRun = tuple[list[_Files | None], StorageFull | None]
#: A session's run for the group commit: its client, messages and their file parts.
_RecordRun = tuple[str, list[FlowMessage], list[_Files | None]]


@dataclass
class Outcome:
    """What the session should do after a message: acknowledge up to ``ack``, tell the agent
    where an upload resumes, and whether the flow changed state."""

    ack: int | None = None
    resume: tuple[str, str, int] | None = None  # (flow_id, upload_id, offset)
    #: Why the upload in ``resume`` is refused (its offset is then the announced size).
    refused: str | None = None
    state_changed: bool = False
    finished: FlowRecord | None = None  # the flow, as this message finished it


#: Threads writing upload chunks (each chunk synced on its own; result files go through the
#: file batcher). Most of their time is spent waiting in ``fsync``, which the kernel folds
#: together, so many at once cost little more than one.
FILE_THREADS = 32
#: Flows whose owner is remembered; finished flows are forgotten, and past this all are.
OWNER_CACHE_SIZE = 200_000


#: The largest upload an agent may announce unless the configuration says otherwise.
MAX_UPLOAD_BYTES = 64 << 30


class Ingestor:
    def __init__(
        self, datastore: Datastore, filestore: Filestore, max_upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self.max_upload_bytes = max_upload_bytes
        self._owners: dict[str, str] = {}
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="peregrine-files")
        self._batches: FileBatcher[tuple[str, list[FlowMessage]], _FilesRun] = FileBatcher(
            filestore, self._store_files_run
        )

    def close(self) -> None:
        """Wait for file writes under way, then stop the file threads."""
        self._batches.close()
        self._files.shutdown(wait=True)

    def expect(self, flow_id: str, client_id: str) -> None:
        """Note a flow just created for a client, so its first messages need no datastore read
        to check who may write to it (a hunt creates thousands at once)."""
        if len(self._owners) >= OWNER_CACHE_SIZE:
            self._owners.clear()  # only a cache: flows that never finished leave entries
        self._owners[flow_id] = client_id

    def owner(self, flow_id: str) -> str | None:
        owner = self._owners.get(flow_id)
        if owner is None:
            owner = self.datastore.collections.owner(flow_id)
            if owner is None:
                return None
            self.expect(flow_id, owner)
        return owner

    def check_owner(self, client_id: str, flow_id: str) -> None:
        if self.owner(flow_id) != client_id:
            raise NotYourFlow(f"{client_id} wrote to flow {flow_id}, which is not its own")

    async def flow_messages(
        self, client_id: str, messages: list[FlowMessage]
    ) -> tuple[list[Outcome], StorageFull | None]:
        """Store a run of messages of the ordered stream, in order.

        Files first (one trip to a file thread for the run; threads serve many sessions at
        once), then the datastore's counts as one piece of the group commit shared with every
        other session; the outcomes (acks) come only after both are durable. When the
        filestore fills up at message k, messages before k are stored and the error is
        returned with their outcomes; k and later are not stored.
        """
        full: StorageFull | None = None
        files: list[_Files | None]
        if any(isinstance(message, _WITH_FILES) for message in messages):
            try:
                files, full = await self._batches.run((client_id, messages))
            except StorageFull as exc:  # the batch's commit: nothing of it is stored
                files, full = [], exc
        else:
            files = [None] * len(messages)
        stored = messages[: len(files)]
        if not stored:
            count_stored([], [], full)
            return [], full
        run: _RecordRun = (client_id, stored, files)
        outcomes: list[Outcome] = await self.datastore.group.run_together(self._record_runs, run)
        count_stored(stored, [f.written if f is not None else 0 for f in files], full)
        return outcomes, full

    def _store_files_run(
        self, run: tuple[str, list[FlowMessage]], batch: DurableBatch
    ) -> _FilesRun:
        """The file part of a run, in ``batch`` (durable once the batch commits)."""
        client_id, messages = run
        files: list[_Files | None] = []
        for message in messages:
            if not isinstance(message, _WITH_FILES):
                files.append(None)
                continue
            try:
                files.append(self._store_files(client_id, message, batch))
            except StorageFull as exc:
                return files, exc
        return files, None

    def _store_files(self, client_id: str, message: FlowMessage, batch: DurableBatch) -> _Files:
        """The filestore's part of a message (blocking file I/O, durable with ``batch``)."""
        self.check_owner(client_id, message.flow_id)
        flow_id, seq = message.flow_id, message.seq
        files = _Files()
        if isinstance(message, ResultBatch):
            self.filestore.check_space()
            files.written = self.filestore.append_rows(
                client_id, flow_id, message.artifact, message.source, seq,
                message.columns, message.rows, batch,
            )  # fmt: skip
        elif isinstance(message, LogBatch):
            self.filestore.check_space()
            self.filestore.append_logs(client_id, flow_id, seq, message.entries, batch)
        elif isinstance(message, UploadStart):
            files.refused = self._upload_refusal(message)
            if files.refused is not None:
                log.warning("refused an upload of %s: %s", client_id, files.refused)
                entry = {"time": time.time(), "level": "error", "message": files.refused}
                self.filestore.append_logs(client_id, flow_id, seq, [entry], batch)
                files.resume_offset = message.size
            else:
                files.resume_offset = self.filestore.start_upload(
                    client_id, flow_id, message.upload_id, message.path, message.size,
                    message.sha256,
                )  # fmt: skip
        elif isinstance(message, FlowFinished):
            uploads = self.filestore.uploads(client_id, flow_id)
            files.uploads, files.upload_bytes = len(uploads), sum(u.size for u in uploads)
        return files

    def _upload_refusal(self, message: UploadStart) -> str | None:
        """Why an announced upload may not be stored at all, or None if it may."""
        limit, whose = self.max_upload_bytes, "the server's limits.max_upload_bytes"
        if message.size <= limit:
            record = self.datastore.collections.get(message.flow_id)
            flow_limit = record.request.get("max_upload_bytes") if record is not None else None
            if isinstance(flow_limit, int) and 0 < flow_limit < message.size:
                limit, whose = flow_limit, "the collection's max_upload_bytes"
        if message.size <= limit:
            return None
        return (
            f"upload of {message.path!r} refused: {message.size:,} bytes announced, over "
            f"{whose} ({limit:,} bytes)"
        )

    def _record_runs(self, runs: list[_RecordRun]) -> list[list[Outcome] | Exception]:
        """The datastore's part of many sessions' runs, folded in the group commit: every
        flow they touch is read and written once (``CollectionStore.apply_runs``), and a
        run that fails (a flow not the agent's, or unknown) leaves nothing behind."""
        prepared = [self._steps(client_id, messages, files) for client_id, messages, files in runs]
        valid = [steps for steps in prepared if not isinstance(steps, Exception)]
        applied = iter(self.datastore.collections.apply_runs(valid, time.time()))
        results: list[list[Outcome] | Exception] = []
        for (_client, messages, files), steps in zip(runs, prepared, strict=True):
            done = steps if isinstance(steps, Exception) else next(applied)
            if isinstance(done, Exception):
                results.append(done)
                continue
            results.append(
                [
                    self._outcome(message, part, result)
                    for message, part, result in zip(messages, files, done, strict=True)
                ]
            )
        return results

    def _steps(
        self, client_id: str, messages: list[FlowMessage], files: list[_Files | None]
    ) -> list[FlowStep] | NotYourFlow:
        """What each message changes on its flow, once its sender is known to own it (a
        message with files had its owner checked before writing them)."""
        try:
            for message, part in zip(messages, files, strict=True):
                if part is None:
                    self.check_owner(client_id, message.flow_id)
        except NotYourFlow as exc:
            return exc
        return [_step(message, part) for message, part in zip(messages, files, strict=True)]

    def _outcome(self, message: FlowMessage, files: _Files | None, result: StepResult) -> Outcome:
        """What the session answers for a message it stored (or found stored already)."""
        outcome = Outcome(ack=message.seq, state_changed=result.moved, finished=result.ended)
        if isinstance(message, UploadStart) and files is not None:
            outcome.resume = (message.flow_id, message.upload_id, files.resume_offset)
            outcome.refused = files.refused
        if result.ended is not None:
            self._owners.pop(message.flow_id, None)  # the cache holds flows still being written
        return outcome

    async def store_chunk(self, client_id: str, chunk: UploadChunk) -> Outcome:
        """``upload_chunk`` in a file thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._files, self.upload_chunk, client_id, chunk)

    def upload_chunk(self, client_id: str, chunk: UploadChunk) -> Outcome:
        """Write a chunk at its offset; resumes are by offset, so a repeat is harmless."""
        self.check_owner(client_id, chunk.flow_id)
        self.filestore.check_space()
        length = self.filestore.write_chunk(
            client_id, chunk.flow_id, chunk.upload_id, chunk.offset, chunk.data
        )
        count_chunk(chunk.offset, len(chunk.data), length)
        if length != chunk.offset + len(chunk.data):
            # Out of place (a resend after a reconnect): tell the agent where to continue.
            return Outcome(resume=(chunk.flow_id, chunk.upload_id, length))
        if chunk.last:
            try:
                record = self.filestore.finish_upload(client_id, chunk.flow_id, chunk.upload_id)
            except UploadCorrupt as exc:
                log.warning("upload %s of %s is corrupt: %s", chunk.upload_id, client_id, exc)
                return Outcome(resume=(chunk.flow_id, chunk.upload_id, 0))
            return Outcome(resume=(chunk.flow_id, chunk.upload_id, record.size))
        return Outcome()


def _step(message: FlowMessage, files: _Files | None) -> FlowStep:
    """The change a message makes to its flow's record."""
    step = FlowStep(message.flow_id, message.seq)
    if isinstance(message, ResultBatch):
        step.rows, step.bytes = len(message.rows), files.written if files is not None else 0
    elif isinstance(message, LogBatch):
        step.logs = len(message.entries)
    elif isinstance(message, FlowStarted):
        step.to_state, step.drop_task = IN_PROGRESS, True
    elif isinstance(message, SourceFinished):
        detail = {
            "status": message.status,
            "rows": message.rows,
            "error": message.error,
            "elapsed": message.elapsed,
            "warnings": message.warnings,
            "uploads_skipped": message.uploads_skipped,
        }
        step.warnings, step.source = (
            message.warnings,
            (f"{message.artifact}/{message.source}", detail),
        )
    elif isinstance(message, UploadStart):
        refused = files is not None and files.refused is not None
        step.logs = step.warnings = 1 if refused else 0  # logged, and a warning of the flow
    elif isinstance(message, FlowFinished):
        step.to_state, step.error = _FLOW_STATES.get(message.status, ERROR), message.error
        if files is not None:
            step.uploads, step.upload_bytes = files.uploads, files.upload_bytes
    return step


__all__ = ["Ingestor", "NotYourFlow", "Outcome", "StorageFull"]
