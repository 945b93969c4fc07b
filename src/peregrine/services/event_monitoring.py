"""Event monitoring's services: which event artifacts run where, and the events they send.

Assignments are checked like a collection (the artifact is a CLIENT_EVENT one, its parameters
are valid, the assigner holds the permissions it needs), stored as one versioned set
(``datastore/events.py``), then pushed at once to the clients this frontend holds; the other
frontends hear ``event_assignments_changed`` on the bus and push to theirs, and a client that
connects later gets its set at login (``payload_for``). A client's set is every assignment for
all clients plus those naming one of its labels, so a label change sends it a new set too.

Events themselves are stored by the frontend that receives them (``server/event_ingest.py``)
into ``EventFiles`` and then published on the process's ``EventStream``; reads by time range
and the live follow go through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import IO, Any

import msgspec

from peregrine.artifacts.composition import dependencies
from peregrine.artifacts.loader import ArtifactError
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner
from peregrine.config.model import EventSettings
from peregrine.datastore import Datastore
from peregrine.datastore.events import EventAssignment
from peregrine.events.stream import EventBatch, EventStream
from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    ArtifactCall,
    EventAssignments,
    EventRows,
    EventStatus,
    encode,
)
from peregrine.services.client_index import ClientIndex
from peregrine.services.fleet import Fleet, Leadership
from peregrine.services.hunt_results import EXPORT_FORMATS, write_export

log = logging.getLogger(__name__)

#: The bus notice that the assignment set changed (each frontend pushes to its own clients).
CHANGED = "event_assignments_changed"
#: Bus notices of the live follow across frontends: someone follows here (sent every
#: FOLLOW_ANNOUNCE_SECONDS while they do), and where a batch just stored lies in the shared
#: filestore (sent only while a follower elsewhere said so within FOLLOW_INTEREST_SECONDS).
FOLLOWING = "events_following"
STORED = "events_stored"
NOTICES = frozenset({CHANGED, FOLLOWING, STORED})
FOLLOW_ANNOUNCE_SECONDS = 5.0
FOLLOW_INTEREST_SECONDS = 15.0
#: Batches one follower may lag before the oldest are dropped for it.
FOLLOW_BACKLOG = 256
#: Seconds a frontend trusts its copy of the set without reading it again (a lost notice
#: costs at most this much delay).
CACHE_SECONDS = 10.0
#: States an agent reports (``EventStatus``); anything else is stored as ``unknown``.
STATES = frozenset({"running", "restarting", "failed", "stopped"})
#: Seconds between two retention passes of the leader.
RETENTION_SECONDS = 3600.0


class EventAssignmentError(ValueError):
    """An assignment that cannot be made; the message says why and what to do."""


class EventMonitoring:
    def __init__(
        self,
        settings: EventSettings,
        datastore: Datastore,
        filestore: Filestore,
        repository: ArtifactRepository,
        fleet: Fleet,
        client_index: ClientIndex,
        stream: EventStream,
    ) -> None:
        self.settings = settings
        self.datastore = datastore
        self.repository = repository
        self.fleet = fleet
        self.client_index = client_index
        self.stream = stream
        self.files = EventFiles(filestore.root, filestore.check_space, settings.retention_days)
        #: Batches stored by the other frontends, read back for the followers here.
        self.remote = EventStream()
        self._followers = 0
        self._followed_elsewhere_until = 0.0
        self._set: tuple[int, list[EventAssignment]] | None = None
        self._read_at = 0.0
        self._payloads: dict[tuple[int, tuple[str, ...]], bytes] = {}

    # -- assignments ----------------------------------------------------------------------------

    async def assign(
        self,
        artifact: str,
        parameters: dict[str, Any],
        labels: Iterable[str],
        by: str,
        permissions: frozenset[str],
    ) -> int:
        """Run ``artifact`` on every client (no labels) or on those with any of ``labels``;
        the set's new version. Replaces an earlier assignment of the same artifact."""
        labels = sorted({label.strip() for label in labels if label.strip()})
        runner = ArtifactRunner(self.repository, permissions=permissions)
        try:
            runner.plan(artifact, parameters, events=True)
        except ArtifactError as exc:
            raise EventAssignmentError(str(exc)) from None
        version, current = await self.assignments()
        planned = [a for a in current if a.artifact != artifact]
        trial = EventAssignment(artifact, dict(parameters), labels, sorted(permissions), 0, 0, by)
        size = len(self._build(version + 1, [*planned, trial]))
        if size > MAX_MESSAGE_BYTES:
            raise EventAssignmentError(
                f"the assignment set would be {size:,} bytes, over the {MAX_MESSAGE_BYTES:,}-"
                "byte limit of one message to an agent: pass smaller parameters or assign "
                "fewer artifacts"
            )
        version = await asyncio.to_thread(
            self.datastore.events.assign,
            artifact, dict(parameters), labels, sorted(permissions), time.time(), by,
        )  # fmt: skip
        await self._changed_here()
        return version

    async def unassign(self, artifact: str, by: str) -> int | None:
        """Stop ``artifact`` everywhere; the new version, None if it was not assigned."""
        version = await asyncio.to_thread(self.datastore.events.unassign, artifact, time.time(), by)
        if version is not None:
            await self._changed_here()
        return version

    async def assignments(self, fresh: bool = False) -> tuple[int, list[EventAssignment]]:
        """The set (version, assignments), from this frontend's copy unless it is old."""
        if fresh or self._set is None or time.monotonic() - self._read_at > CACHE_SECONDS:
            self._set = await asyncio.to_thread(self.datastore.events.assignments)
            self._read_at = time.monotonic()
            if len(self._payloads) > 1024:
                self._payloads.clear()
        return self._set

    async def _changed_here(self) -> None:
        await self.changed_elsewhere()
        await self.fleet.announce(CHANGED)

    async def changed_elsewhere(self) -> None:
        """The set changed (here or on another frontend): send each client held here its set."""
        await self.assignments(fresh=True)
        for client_id in list(self.fleet.held_here()):
            await self.push(client_id)

    async def push(self, client_id: str) -> None:
        """Send a client held here its current set (a label change, a new set)."""
        if self.fleet.holds(client_id):
            payload = await self.payload_for(client_id)
            if payload is not None:
                await self.fleet.push(client_id, payload, False)

    async def payload_for(self, client_id: str) -> bytes | None:
        """The encoded ``EventAssignments`` for a client, None while nothing was ever assigned
        (so an agent that never watched anything is not sent an empty set at each login)."""
        version, assigned = await self.assignments()
        if version == 0:
            return None
        entry = self.client_index.clients.get(client_id)
        labels = entry.labels if entry is not None else frozenset()
        mine = [a for a in assigned if a.applies_to(labels)]
        key = (version, tuple(a.artifact for a in mine))
        payload = self._payloads.get(key)
        if payload is None:
            payload = self._payloads[key] = self._build(version, mine)
        return payload

    def _build(self, version: int, assigned: list[EventAssignment]) -> bytes:
        """The message for these assignments. Permissions are what every one of its
        assigners was granted (each artifact was checked against its own at assignment)."""
        used: dict[str, Any] = {}
        granted: set[str] = set()
        for assignment in assigned:
            artifact = self.repository.find(assignment.artifact)
            if artifact is None:
                log.warning("assigned event artifact %s no longer exists", assignment.artifact)
                continue
            used.setdefault(artifact.name, artifact)
            queries = [artifact.precondition or ""] + [s.query for s in artifact.sources]
            for dependency in dependencies(self.repository.find, *queries):
                used.setdefault(dependency.name, dependency)
            granted.update(assignment.permissions)
        settings = self.settings
        message = EventAssignments(
            version=version,
            artifacts=[
                ArtifactCall(name=a.artifact, parameters=a.parameters)
                for a in assigned
                if a.artifact in used
            ],
            definitions=[msgspec.to_builtins(a) for a in used.values()],
            permissions=sorted(granted),
            batch_rows=settings.batch_rows,
            batch_seconds=settings.batch_seconds,
            cpu_limit=settings.cpu_limit,
            max_memory_mb=settings.max_memory_mb,
        )
        return encode(message)

    # -- what agents report ---------------------------------------------------------------------

    async def record_status(self, client_id: str, status: EventStatus) -> bool:
        """Keep an agent's report; one about an artifact that is not an event artifact here
        is dropped (so an agent cannot fill the table with made-up names). Whether kept."""
        if not self.is_event_artifact(status.artifact):
            log.warning("%s reported on %r, not an event artifact", client_id, status.artifact)
            return False
        state = status.state if status.state in STATES else "unknown"
        await self.datastore.group.run(
            self.datastore.events.record_status,
            client_id, status.artifact[:256], state, status.error, status.restarts,
            status.time, time.time(),
        )  # fmt: skip
        return True

    def publish(self, batch: EventBatch) -> None:
        """A batch is durable: hand it to the alert rules and the followers of this process."""
        self.stream.publish(batch)

    # -- the live follow, across frontends ------------------------------------------------------

    @contextlib.asynccontextmanager
    async def follow(
        self, client_id: str | None = None, artifact: str | None = None
    ) -> AsyncIterator[asyncio.Queue[EventBatch]]:
        """A queue of the batches stored from now on, on this frontend and (through the bus
        and the shared filestore) on the others, filtered by client and artifact. A follower
        that lags more than FOLLOW_BACKLOG batches loses the oldest (a live view).

        A batch sent again by its agent (its acknowledgement was lost) is published again, so
        the alert rules see every event at least once; a follower is shown each event once: a
        batch at or below the last sequence number it got of that client's artifact (the rule
        the event files keep) is skipped."""
        queue: asyncio.Queue[EventBatch] = asyncio.Queue(FOLLOW_BACKLOG)
        last_seq: dict[tuple[str, str], int] = {}

        async def take(batch: EventBatch) -> None:
            if (client_id is None or batch.client_id == client_id) and (
                artifact is None or batch.artifact == artifact
            ):
                stream = (batch.client_id, batch.artifact)
                if batch.first_seq <= last_seq.get(stream, 0):
                    return  # seen already
                last_seq[stream] = batch.first_seq + len(batch.rows) - 1
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(batch)

        name = f"follow-{id(queue)}"
        self.stream.subscribe(name, take)
        self.remote.subscribe(name, take)
        self._followers += 1
        announcer = asyncio.create_task(self._announce_following())
        try:
            yield queue
        finally:
            self._followers -= 1
            announcer.cancel()
            self.stream.unsubscribe(name)
            self.remote.unsubscribe(name)

    async def close(self) -> None:
        await self.remote.close()

    async def _announce_following(self) -> None:
        while True:
            await self.fleet.announce(FOLLOWING)
            await asyncio.sleep(FOLLOW_ANNOUNCE_SECONDS)

    async def tell_followers_elsewhere(
        self, client_id: str, placed: list[tuple[EventRows, str, int]]
    ) -> None:
        """Batches just stored here, with where they lie: announced only while someone
        follows on another frontend (a bus notice per batch costs nothing otherwise)."""
        if time.monotonic() > self._followed_elsewhere_until:
            return
        for batch, day, offset in placed:
            await self.fleet.announce(
                STORED, client_id=client_id, artifact=batch.artifact, source=batch.source,
                day=day, offset=offset, count=len(batch.rows), first_seq=batch.seq,
            )  # fmt: skip

    async def on_notice(self, notice: dict[str, Any]) -> None:
        """A notice of another frontend (see NOTICES)."""
        kind = notice.get("kind")
        if kind == CHANGED:
            await self.changed_elsewhere()
        elif kind == FOLLOWING:
            self._followed_elsewhere_until = time.monotonic() + FOLLOW_INTEREST_SECONDS
        elif kind == STORED and self._followers:
            try:
                batch = await asyncio.to_thread(self._read_stored, notice)
            except (KeyError, TypeError, ValueError, OSError) as exc:
                log.warning("could not read a batch another frontend stored: %s", exc)
                return
            self.remote.publish(batch)

    def _read_stored(self, notice: dict[str, Any]) -> EventBatch:
        client_id, artifact = str(notice["client_id"]), str(notice["artifact"])
        count = min(int(notice["count"]), 10_000)
        rows = self.files.read_day(
            client_id, artifact, str(notice["day"]), int(notice["offset"]), count
        )
        hostname, labels = self.describe(client_id)
        meta = ("_seq", "_time", "_source")
        return EventBatch(
            client_id=client_id,
            artifact=artifact,
            source=str(notice.get("source", "")),
            first_seq=int(notice["first_seq"]),
            rows=[{k: v for k, v in row.items() if k not in meta} for row in rows],
            received=time.time(),
            hostname=hostname,
            labels=labels,
        )

    def is_event_artifact(self, name: str) -> bool:
        """Whether ``name`` is a CLIENT_EVENT artifact of this server (what agents may send
        rows and statuses of)."""
        known = self.repository.find(name)
        return known is not None and known.type == "CLIENT_EVENT"

    def describe(self, client_id: str) -> tuple[str, tuple[str, ...]]:
        """A client's host name and labels, as the index knows them (for ``EventBatch``)."""
        entry = self.client_index.clients.get(client_id)
        if entry is None:
            return "", ()
        return entry.hostname or "", tuple(sorted(entry.labels))

    def exporter(self, start: float, end: float) -> EventExport:
        """What the API's streamed export runs for ``[start, end)``."""
        return EventExport(self.files, start, end)

    # -- retention (leader work) ----------------------------------------------------------------

    async def run_retention(self, leader: Leadership, interval: float = RETENTION_SECONDS) -> None:
        """Expire old events every ``interval`` seconds, on the leader only."""
        while True:
            try:
                if leader.try_acquire():
                    await self.expire()
            except Exception:
                log.exception("event retention pass failed")
            await asyncio.sleep(interval)

    async def expire(self) -> int:
        """Delete the days of events past ``events.retention_days``; how many day files went."""
        removed = await asyncio.to_thread(self.files.expire)
        if removed:
            log.info("expired %d day files of events", removed)
        return removed


class EventExport:
    """A client's events of one artifact over a time range, written as a hunt's results are
    (the same CSV, JSONL and Parquet writers)."""

    def __init__(self, files: EventFiles, start: float, end: float) -> None:
        self.files, self.start, self.end = files, start, end

    def export(self, client_id: str, artifact: str, fmt: str, out: IO[bytes]) -> int:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}: {', '.join(EXPORT_FORMATS)}")
        rows = self.files.iter_rows(client_id, artifact, self.start, self.end)
        return write_export(_batches(rows), fmt, out)


def _batches(rows: Iterator[dict[str, Any]], size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch
