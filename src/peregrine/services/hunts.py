"""Hunts: one collection scheduled on every client that matches, now and as clients come online.

The guarantee that matters most — a hunt is scheduled on a client at most once — is the
datastore's: ``schedule_client`` inserts the (hunt, client) pair, the flow and its task in one
transaction keyed by the pair, so concurrent check-ins, a label added while the hunt starts, two
frontends or a restart mid-scheduling can only ever create one flow. Everything here may
therefore retry freely. Statistics are computed from stored flows, so they cannot drift.

The manager (leader work) keeps an in-memory index of clients (labels, OS) to find matches
quickly, pushes a starting hunt to connected clients at ``notifications_per_second`` (no
thundering herd), schedules clients that connect later or gain a matching label, expires hunts,
and creates the iterations of recurring hunts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peregrine.datastore import new_hunt_id
from peregrine.datastore.errors import NotFound
from peregrine.engine.context import ALL_PERMISSIONS
from peregrine.logcontext import log_context
from peregrine.protocol.messages import encode
from peregrine.services import cron
from peregrine.services.client_index import EnrollmentFollower
from peregrine.services.collections import (
    CollectionError,
    Limits,
    Template,
    copy_for,
    template_of,
)
from peregrine.services.outage import OutageLog

if TYPE_CHECKING:
    from peregrine.datastore import FlowRecord, HuntRecord
    from peregrine.services.app import Services

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600.0
#: Stand-ins of real length for sizing a hunt's request before it has an id or clients.
_SIZING_CLIENT = "C." + "0" * 16
_SIZING_HUNT = "H." + "0" * 16
MANAGER_INTERVAL_SECONDS = 2.0
#: Clients scheduled per transaction when a hunt starts with no throttle.
PUSH_BATCH = 250
#: Batches of a hunt's start being stored or pushed at once.
BATCHES_IN_FLIGHT = 4
#: Seconds the running hunts read for one check-in serve the next ones. A hunt started or
#: stopped here or on another frontend (bus notice) is seen at once; the age bounds what a
#: lost notice costs, and the datastore refuses a hunt that stopped meanwhile anyway.
RUNNING_READ_SECONDS = 1.0


class HuntError(Exception):
    """A hunt request that cannot be done; the message says why."""


@dataclass
class HuntSpec:
    """What an analyst asks for when creating a hunt."""

    artifacts: list[tuple[str, dict[str, Any]]]
    description: str = ""
    tags: list[str] = field(default_factory=list)
    include_labels: list[str] = field(default_factory=list)
    exclude_labels: list[str] = field(default_factory=list)
    os: list[str] = field(default_factory=list)
    client_limit: int | None = None
    expires_in: float = DEFAULT_EXPIRY_SECONDS
    notifications_per_second: float | None = None
    limits: Limits = field(default_factory=Limits)
    #: Recurring: create a new hunt every N seconds, or at the times of a cron expression
    #: (UTC); each iteration expires before the next starts.
    every_seconds: float | None = None
    cron: str | None = None


class HuntManager:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.fleet = services.fleet
        self.index = services.client_index
        self.enrollments = EnrollmentFollower(self.index, services.datastore.clients)
        self._pushers: dict[str, asyncio.Task[None]] = {}
        self._templates: dict[str, Template] = {}
        self._lock = asyncio.Lock()
        #: The running hunts as last read, and when (``_running_now``); ``_generation``
        #: moves on whenever a hunt may have started or stopped, so a read begun before that
        #: is not kept.
        self._running_read: tuple[float, list[HuntRecord]] | None = None
        self._running_reading: tuple[int, asyncio.Future[list[HuntRecord]]] | None = None
        self._generation = 0

    @property
    def datastore(self) -> Any:
        return self.services.datastore

    # -- creating and changing hunts ----------------------------------------------------------

    def validate(self, spec: HuntSpec, permissions: frozenset[str]) -> None:
        """Refuse a hunt that could never run: unknown artifacts, bad parameters, rights."""
        if not spec.artifacts:
            raise HuntError("a hunt needs at least one artifact")
        try:
            # The request every client would get (artifacts, parameters, rights, size), built
            # with ids as long as real ones, so its size is the size a client's would be.
            self.services.collections.build(
                _SIZING_CLIENT, spec.artifacts, "hunt", permissions, spec.limits, _SIZING_HUNT
            )
        except CollectionError as exc:
            raise HuntError(str(exc)) from None
        if spec.client_limit is not None and spec.client_limit < 1:
            raise HuntError("client_limit must be at least 1")
        if spec.expires_in <= 0:
            raise HuntError("expires must be in the future")
        if spec.every_seconds is not None and spec.every_seconds < 60:
            raise HuntError("a recurring hunt runs at most once a minute")
        if spec.every_seconds is not None and spec.cron is not None:
            raise HuntError("give every_seconds or cron, not both")
        if spec.cron is not None:
            try:
                cron.parse(spec.cron)
            except cron.CronError as exc:
                raise HuntError(f"cron: {exc}") from None

    async def create(
        self,
        spec: HuntSpec,
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        start: bool = False,
    ) -> HuntRecord:
        """A new hunt, Paused; ``start``: Running at once (stored so, one write: a one-client
        hunt's question is answered one request and two datastore writes sooner)."""
        from peregrine.datastore import HuntRecord

        await asyncio.to_thread(self.validate, spec, permissions)
        now = time.time()
        record = HuntRecord(
            hunt_id=new_hunt_id(),
            description=spec.description,
            tags=list(spec.tags),
            artifacts=[{"name": n, "parameters": dict(p)} for n, p in spec.artifacts],
            limits=dataclasses.asdict(spec.limits),
            include_labels=list(spec.include_labels),
            exclude_labels=list(spec.exclude_labels),
            os=list(spec.os),
            client_limit=spec.client_limit,
            expires=now + spec.expires_in,
            creator=creator,
            created=now,
            started=now if start else None,
            stopped=None,
            state="Running" if start else "Paused",
            notifications_per_second=spec.notifications_per_second,
            permissions=sorted(permissions),
            schedule=_schedule(spec),
            parent_id=None,
            last_run=None,
        )
        await asyncio.to_thread(self.datastore.hunts.create, record)
        if start:
            await self._running(record)
        return record

    async def start(self, hunt_id: str) -> HuntRecord:
        hunt = await self._get(hunt_id)
        if hunt.expires <= time.time():
            raise HuntError(f"{hunt_id} has expired; create a new hunt (or use hunt_add)")
        if not await asyncio.to_thread(
            self.datastore.hunts.set_state, hunt_id, "Running", time.time()
        ):
            raise HuntError(f"{hunt_id} is {hunt.state} and cannot start")
        hunt = await self._get(hunt_id)
        await self._running(hunt)
        return hunt

    async def _running(self, hunt: HuntRecord) -> None:
        """A hunt just became Running: push it to the connected clients it matches."""
        self.hunts_changed()
        if hunt.schedule is None:
            self._start_pushing(hunt)
            # Every process pushes the hunt to the clients it holds.
            await self.fleet.announce("hunt_started", hunt_id=hunt.hunt_id)
        self.services.events.hunt_changed(hunt.hunt_id)

    async def pause(self, hunt_id: str) -> HuntRecord:
        await self._set(hunt_id, "Paused")
        self._stop_pushing(hunt_id)
        await self.fleet.announce("hunt_stopped", hunt_id=hunt_id)
        self.services.events.hunt_changed(hunt_id)
        return await self._get(hunt_id)

    async def stop(self, hunt_id: str, cancel_running: bool = False) -> HuntRecord:
        """Stop scheduling; with ``cancel_running`` also cancel what has not finished."""
        await self._set(hunt_id, "Stopped")
        self._stop_pushing(hunt_id)
        await self.fleet.announce("hunt_stopped", hunt_id=hunt_id)
        self.services.events.hunt_changed(hunt_id)
        if cancel_running:
            changed = await asyncio.to_thread(
                self.datastore.hunts.cancel_unfinished, hunt_id, time.time(), "hunt stopped"
            )
            from peregrine.protocol.messages import CancelCollection

            for client_id, flow_id in changed:
                cancel = encode(CancelCollection(flow_id=flow_id, reason="hunt stopped"))
                await self.fleet.push(client_id, cancel, False)
                self.services.events.flow_changed(flow_id)
        return await self._get(hunt_id)

    async def archive(self, hunt_id: str) -> HuntRecord:
        await self._set(hunt_id, "Archived")
        self._stop_pushing(hunt_id)
        await self.fleet.announce("hunt_stopped", hunt_id=hunt_id)
        self.services.events.hunt_changed(hunt_id)
        return await self._get(hunt_id)

    async def hunt_add(self, hunt_id: str, client_id: str) -> bool:
        """Schedule one client now, even on a paused or expired hunt (still at most once)."""
        hunt = await self._get(hunt_id)
        if hunt.state == "Archived":
            raise HuntError(f"{hunt_id} is archived")
        if await asyncio.to_thread(self.datastore.clients.get, client_id) is None:
            raise HuntError(f"unknown client {client_id}")
        return await self.schedule(hunt, client_id, respect_limit=False)

    async def _get(self, hunt_id: str) -> HuntRecord:
        hunt = await asyncio.to_thread(self.datastore.hunts.get, hunt_id)
        if hunt is None:
            raise HuntError(f"unknown hunt {hunt_id}")
        return hunt  # type: ignore[no-any-return]

    async def _set(self, hunt_id: str, state: str) -> None:
        hunt = await self._get(hunt_id)
        changed = await asyncio.to_thread(
            self.datastore.hunts.set_state, hunt_id, state, time.time()
        )
        # After the change: a read of the running hunts begun before it is not kept.
        self.hunts_changed()
        if not changed:
            raise HuntError(f"{hunt_id} is {hunt.state} and cannot become {state}")

    # -- scheduling ---------------------------------------------------------------------------

    def _request_for(self, hunt: HuntRecord, client_id: str) -> tuple[FlowRecord, bytes]:
        """The hunt's flow record and request for one client.

        Validating artifacts and gathering their definitions is the same work for every client
        of a hunt, so it is done once per hunt and the result copied with a fresh flow id."""
        now = time.time()
        expires = self._flow_expiry(hunt, now)
        template = self._templates.get(hunt.hunt_id)
        if template is None:
            record, payload = self.services.collections.prepare(
                client_id,
                [(a["name"], a["parameters"]) for a in hunt.artifacts],
                f"hunt:{hunt.hunt_id}",
                frozenset(hunt.permissions),
                Limits(**hunt.limits),
                hunt.hunt_id,
                expires,
            )
            self._templates[hunt.hunt_id] = template_of(record, payload)
            return record, payload
        return copy_for(template, client_id, now, expires)

    def _flow_expiry(self, hunt: HuntRecord, now: float) -> float:
        """When a hunt's collection on one client expires if that client never starts it:
        with the hunt, unless the hunt's limits say otherwise or the client was added to an
        expired hunt (``hunt_add``: the server's default then)."""
        wait = hunt.limits.get("expires_in")
        if wait:
            return now + float(wait)
        if hunt.expires > now:
            return hunt.expires
        return now + self.services.collections.default_expiry

    def _requests_for(
        self, hunt: HuntRecord, client_ids: list[str]
    ) -> list[tuple[FlowRecord, bytes]]:
        return [self._request_for(hunt, client_id) for client_id in client_ids]

    async def schedule(self, hunt: HuntRecord, client_id: str, respect_limit: bool = True) -> bool:
        """Create the hunt's flow on one client, at most once; push it if connected."""
        with log_context(hunt_id=hunt.hunt_id, client_id=client_id):
            return await self._schedule(hunt, client_id, respect_limit)

    async def _schedule(self, hunt: HuntRecord, client_id: str, respect_limit: bool) -> bool:
        try:
            record, payload = await asyncio.to_thread(self._request_for, hunt, client_id)
        except CollectionError as exc:
            log.warning("hunt %s cannot run on %s: %s", hunt.hunt_id, client_id, exc)
            return False
        try:
            scheduled = await self.datastore.group.run(
                self.datastore.hunts.schedule_client,
                hunt.hunt_id,
                record,
                payload,
                time.time(),
                respect_limit=respect_limit,
            )
        except NotFound as exc:  # the client (or hunt) was removed meanwhile
            log.warning("hunt %s not scheduled on %s: %s", hunt.hunt_id, client_id, exc)
            return False
        if scheduled:
            self.fleet.expect(record.flow_id, client_id)
            await self.fleet.push(client_id, payload, True)
            self.services.events.flow_changed(record.flow_id)
        return bool(scheduled)

    async def started_elsewhere(self, hunt_id: str) -> None:
        """Another process started a hunt: push it to the clients this one holds."""
        self.hunts_changed()
        hunt = await asyncio.to_thread(self.datastore.hunts.get, hunt_id)
        if hunt is not None and hunt.state == "Running" and hunt.schedule is None:
            self._start_pushing(hunt)

    def stopped_elsewhere(self, hunt_id: str) -> None:
        self.hunts_changed()
        self._stop_pushing(hunt_id)

    def hunts_changed(self) -> None:
        """A hunt may have started or stopped: the next check-in reads the running ones."""
        self._generation += 1
        self._running_read = None

    async def _running_now(self) -> list[HuntRecord]:
        """The hunts that schedule clients now, read at most once a ``RUNNING_READ_SECONDS``
        for the check-ins of a burst (each used to read them: two reads a new client); the
        check-ins that come while it is read wait for that read."""
        now = time.time()
        cached = self._running_read
        if cached is not None and time.monotonic() - cached[0] < RUNNING_READ_SECONDS:
            return [hunt for hunt in cached[1] if hunt.expires > now]
        reading = self._running_reading
        if reading is None or reading[0] != self._generation:
            task = asyncio.ensure_future(self._read_running())
            reading = self._running_reading = (self._generation, task)
        return await asyncio.shield(reading[1])

    async def _read_running(self) -> list[HuntRecord]:
        generation, read_at = self._generation, time.monotonic()
        try:
            running: list[HuntRecord] = await asyncio.to_thread(
                self.datastore.hunts.running, time.time()
            )
        finally:
            if self._running_reading is not None and self._running_reading[0] == generation:
                self._running_reading = None
        if generation == self._generation:  # no hunt started or stopped meanwhile
            self._running_read = (read_at, running)
        return running

    def _start_pushing(self, hunt: HuntRecord) -> None:
        self._stop_pushing(hunt.hunt_id)
        task = asyncio.create_task(self._push(hunt))
        self._pushers[hunt.hunt_id] = task

        def forget(done: asyncio.Task[None], hunt_id: str = hunt.hunt_id) -> None:
            if self._pushers.get(hunt_id) is done:
                del self._pushers[hunt_id]

        task.add_done_callback(forget)

    def _stop_pushing(self, hunt_id: str) -> None:
        task = self._pushers.pop(hunt_id, None)
        if task is not None:
            task.cancel()

    async def _push(self, hunt: HuntRecord) -> None:
        """Schedule the currently connected matching clients, at the hunt's rate."""
        rate = hunt.notifications_per_second or 0
        interval = 1.0 / rate if rate > 0 else 0.0
        already = await asyncio.to_thread(self._scheduled_clients, hunt.hunt_id)
        candidates = [
            cid
            for cid in self.fleet.held_here()
            if cid not in already and self.index.matches(hunt, cid)
        ]
        if not interval and hunt.client_limit is None:
            candidates = await self._push_batches(hunt, candidates)
        for client_id in candidates:
            current = await asyncio.to_thread(self.datastore.hunts.get, hunt.hunt_id)
            if current is None or current.state != "Running":
                return
            if not self.fleet.holds(client_id):
                continue  # it went away; it is scheduled when it checks in again
            await self.schedule(current, client_id)
            if interval:
                await asyncio.sleep(interval)

    async def _push_batches(self, hunt: HuntRecord, candidates: list[str]) -> list[str]:
        """No throttle and no client limit: schedule in batches, one commit each, then push.
        Several batches are in flight at once, so the next is being stored while one is
        pushed. Returns the clients left for the one-by-one path (a batch the datastore
        declined)."""
        left: list[str] = []
        stop = asyncio.Event()  # the hunt cannot run, or was stopped meanwhile
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)

        async def one_batch(chunk: list[str]) -> None:
            async with in_flight:
                chunk = [c for c in chunk if self.fleet.holds(c)]
                if not chunk or stop.is_set():
                    return
                try:
                    batch = await asyncio.to_thread(self._requests_for, hunt, chunk)
                except CollectionError as exc:
                    log.warning("hunt %s cannot run: %s", hunt.hunt_id, exc)
                    stop.set()
                    return
                # Through the group commit: in turn with the results of clients already
                # answering (a plain write would race the committer for the writer).
                done = await self.datastore.group.run(
                    self.datastore.hunts.schedule_many, hunt.hunt_id, batch, time.time()
                )
                if done is None:
                    current = await asyncio.to_thread(self.datastore.hunts.get, hunt.hunt_id)
                    if current is None or current.state != "Running":
                        stop.set()
                        return
                    left.extend(chunk)  # raced with another frontend: decide one by one
                    return
                scheduled = set(done)
                for record, payload in batch:
                    if record.client_id in scheduled:
                        self.fleet.expect(record.flow_id, record.client_id)
                        await self.fleet.push(record.client_id, payload, True)
                        self.services.events.flow_changed(record.flow_id)

        chunks = [
            candidates[start : start + PUSH_BATCH]
            for start in range(0, len(candidates), PUSH_BATCH)
        ]
        await asyncio.gather(*(one_batch(chunk) for chunk in chunks))
        return [] if stop.is_set() else left

    def _scheduled_clients(self, hunt_id: str) -> set[str]:
        scheduled: set[str] = set()
        offset, page_size = 0, 5000
        while True:
            page = self.datastore.hunts.clients(hunt_id, limit=page_size, offset=offset)
            scheduled.update(c.client_id for c in page)
            if len(page) < page_size:
                return scheduled
            offset += page_size

    # -- events from sessions and interrogation -----------------------------------------------

    async def client_checked_in(self, client_id: str, seen_hunts: Iterable[str] = ()) -> None:
        """A client connected: schedule every running hunt it matches and does not have."""
        running = await self._running_now()
        if not running:
            return
        have = set(seen_hunts) | await asyncio.to_thread(
            self.datastore.hunts.scheduled_hunts, client_id
        )
        for hunt in running:
            if (
                hunt.schedule is None
                and hunt.hunt_id not in have
                and self.index.matches(hunt, client_id)
            ):
                await self.schedule(hunt, client_id)

    async def client_changed(
        self,
        client_id: str,
        labels: Iterable[str] | None = None,
        os: str | None = None,
        hostname: str | None = None,
        ip_addresses: Iterable[str] | None = None,
    ) -> None:
        """Labels or OS changed (or became known): the client may now match running hunts."""
        self.index.update(client_id, labels, os, hostname, ip_addresses)
        if self.fleet.holds(client_id):
            await self.client_checked_in(client_id)

    # -- the leader loop ----------------------------------------------------------------------

    async def load(self) -> None:
        """Resume the hunts that were running (after a restart, or a bus outage that dropped
        their start: still at most once). One being pushed here already is left to go on:
        cancelled mid-batch, it could leave flows stored but never pushed."""
        self.hunts_changed()
        for hunt in await asyncio.to_thread(self.datastore.hunts.running, time.time()):
            if hunt.schedule is None and hunt.hunt_id not in self._pushers:
                self._start_pushing(hunt)  # resumes scheduling after a restart: at most once

    async def run(self, interval: float = MANAGER_INTERVAL_SECONDS, load: bool = True) -> None:
        if load:
            await self.load()
        outage = OutageLog(log, "hunt manager")
        while True:
            try:
                # Every process: clients enrolled anywhere become searchable and huntable here.
                await self.enrollments.catch_up()
                if self.services.leader.try_acquire():  # singleton work: the leader only
                    await self.tick()
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.passed()
            await asyncio.sleep(interval)

    async def tick(self, now: float | None = None) -> None:
        """Expire hunts and start due iterations of recurring hunts."""
        now = now or time.time()
        hunts = await asyncio.to_thread(self.datastore.hunts.list, ["Running"], 10_000, 0)
        for hunt in hunts:
            if not self.services.leader.is_leader:
                return  # lost the lead mid-pass: the new leader takes it from here
            if hunt.expires <= now:
                # Guarded by state: if another leader expired it meanwhile, this changes nothing.
                if await asyncio.to_thread(
                    self.datastore.hunts.set_state, hunt.hunt_id, "Stopped", now
                ):
                    log.info("hunt %s expired", hunt.hunt_id)
                self.hunts_changed()
                self._stop_pushing(hunt.hunt_id)
            elif hunt.schedule is not None:
                await self._maybe_iterate(hunt, now)

    async def _maybe_iterate(self, template: HuntRecord, now: float) -> None:
        due, next_run = next_iteration(template, now)
        if not due:
            return
        child = dataclasses.replace(
            template,
            hunt_id=new_hunt_id(),
            created=now,
            started=None,
            stopped=None,
            state="Paused",
            schedule=None,
            parent_id=template.hunt_id,
            last_run=None,
            # Each iteration ends before the next begins: a client never piles them up.
            expires=min(template.expires, now + (next_run - now) * 0.95),
            description=template.description,
        )
        # One transaction that also moves the template's last run on: a crash or a second
        # frontend cannot create the same iteration twice.
        created = await asyncio.to_thread(
            self.datastore.hunts.create_recurrence,
            template.hunt_id,
            child,
            last_run=template.last_run,
        )
        if created:
            await self.start(child.hunt_id)

    async def close(self) -> None:
        for hunt_id in list(self._pushers):
            self._stop_pushing(hunt_id)
        await asyncio.sleep(0)


def _schedule(spec: HuntSpec) -> dict[str, Any] | None:
    if spec.every_seconds:
        return {"every_seconds": spec.every_seconds}
    if spec.cron:
        return {"cron": spec.cron}
    return None


def next_iteration(template: HuntRecord, now: float) -> tuple[bool, float]:
    """Whether a recurring hunt is due at ``now``, and when the run after that one is."""
    schedule = template.schedule or {}
    since = template.last_run if template.last_run is not None else template.started or now
    if schedule.get("cron"):
        expression = cron.parse(str(schedule["cron"]))
        due = template.last_run is None or expression.next_after(since) <= now
        return due, expression.next_after(now)
    every = float(schedule.get("every_seconds") or 0)
    if not every:
        return False, now
    due = template.last_run is None or now - template.last_run >= every
    return due, now + every
