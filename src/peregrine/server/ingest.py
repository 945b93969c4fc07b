"""Store what agents send: result rows, logs, source and flow status, uploads.

Every flow message is written to the filestore and then recorded in the datastore with its
``seq``; only then is it acknowledged. Both stores ignore a ``seq`` they already have, so an agent
resending after a crash (either side's) or a lost connection causes no duplicate. When the
filestore is full, nothing is acknowledged and the agent is told to hold its spool.

These functions block (file and database I/O); the session runs them in a worker thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from peregrine.datastore import Datastore
from peregrine.filestore import Filestore, StorageFull, UploadCorrupt
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

log = logging.getLogger(__name__)

_FLOW_STATES = {"finished": "Finished", "error": "Error", "cancelled": "Cancelled"}


class NotYourFlow(Exception):
    """An agent wrote to a collection that is not its own (or does not exist)."""


@dataclass
class Outcome:
    """What the session should do after a message: acknowledge up to ``ack``, tell the agent
    where an upload resumes, and whether the flow changed state."""

    ack: int | None = None
    resume: tuple[str, str, int] | None = None  # (flow_id, upload_id, offset)
    state_changed: bool = False
    finished_flow: str | None = None


class Ingestor:
    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self._owners: dict[str, str] = {}

    def owner(self, flow_id: str) -> str | None:
        owner = self._owners.get(flow_id)
        if owner is None:
            record = self.datastore.collections.get(flow_id)
            if record is None:
                return None
            owner = self._owners[flow_id] = record.client_id
        return owner

    def check_owner(self, client_id: str, flow_id: str) -> None:
        if self.owner(flow_id) != client_id:
            raise NotYourFlow(f"{client_id} wrote to flow {flow_id}, which is not its own")

    def flow_message(self, client_id: str, message: FlowMessage) -> Outcome:
        """Store one message of the ordered stream; raises StorageFull when it cannot."""
        self.check_owner(client_id, message.flow_id)
        flow_id, seq, now = message.flow_id, message.seq, time.time()
        collections = self.datastore.collections
        record = collections.get(flow_id)
        if record is not None and seq > record.last_seq + 1:
            # An earlier message was refused (the filestore was full): storing this one would
            # raise last_seq past it, so its resend would be dropped as a duplicate and the
            # ack would free it from the agent's spool. Not stored, not acknowledged: the agent
            # sends everything again, in order, after its pause or reconnect.
            log.debug(
                "flow %s: seq %d out of order (stored up to %d)", flow_id, seq, record.last_seq
            )
            return Outcome()
        outcome = Outcome(ack=seq)
        if isinstance(message, ResultBatch):
            self.filestore.check_space()
            written = self.filestore.append_rows(
                client_id, flow_id, message.artifact, message.source, seq,
                message.columns, message.rows,
            )  # fmt: skip
            collections.apply(flow_id, seq, now, rows=len(message.rows), bytes=written)
        elif isinstance(message, LogBatch):
            self.filestore.check_space()
            self.filestore.append_logs(client_id, flow_id, seq, message.entries)
            collections.apply(flow_id, seq, now, logs=len(message.entries))
        elif isinstance(message, FlowStarted):
            _applied, outcome.state_changed = collections.apply_and_transition(
                flow_id, seq, now, "In progress", drop_task=True
            )
        elif isinstance(message, SourceFinished):
            key = f"{message.artifact}/{message.source}"
            detail = {
                "status": message.status,
                "rows": message.rows,
                "error": message.error,
                "elapsed": message.elapsed,
            }
            collections.apply(flow_id, seq, now, source=(key, detail))
        elif isinstance(message, UploadStart):
            offset = self.filestore.start_upload(
                client_id, flow_id, message.upload_id, message.path, message.size, message.sha256
            )
            collections.apply(flow_id, seq, now)
            outcome.resume = (flow_id, message.upload_id, offset)
        elif isinstance(message, FlowFinished):
            uploads = self.filestore.uploads(client_id, flow_id)
            state = _FLOW_STATES.get(message.status, "Error")
            applied, outcome.state_changed = collections.apply_and_transition(
                flow_id, seq, now, state, message.error,
                uploads=len(uploads), upload_bytes=sum(u.size for u in uploads),
            )  # fmt: skip
            if applied:
                outcome.finished_flow = flow_id
        return outcome

    def upload_chunk(self, client_id: str, chunk: UploadChunk) -> Outcome:
        """Write a chunk at its offset; resumes are by offset, so a repeat is harmless."""
        self.check_owner(client_id, chunk.flow_id)
        self.filestore.check_space()
        length = self.filestore.write_chunk(
            client_id, chunk.flow_id, chunk.upload_id, chunk.offset, chunk.data
        )
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


__all__ = ["Ingestor", "NotYourFlow", "Outcome", "StorageFull"]
