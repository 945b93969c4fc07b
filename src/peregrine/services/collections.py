"""Creating and cancelling collections (flows) on one client.

A collection is checked completely before anything is stored (the client exists, every artifact
is known, parameters are valid, the creator has the permissions the artifacts need), then stored
as a flow record plus a durable task, and only then pushed to the agent if it is connected. An
agent that is offline gets the task when it next connects, so nothing depends on timing.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from peregrine.artifacts.composition import dependencies
from peregrine.artifacts.loader import ArtifactError
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.artifacts.runner import ArtifactRunner
from peregrine.datastore import FINAL_STATES, Datastore, FlowRecord
from peregrine.engine.context import ALL_PERMISSIONS
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    ArtifactCall,
    CancelCollection,
    CollectionRequest,
    decode_from_server,
    encode,
)

log = logging.getLogger(__name__)

#: Seconds a collection waits for its client by default (``flows.scheduled_expiry``).
DEFAULT_SCHEDULED_EXPIRY = 7 * 86400.0

#: ``push(client_id, payload, stored)``: see ``Fleet.push`` (``services/fleet.py``).
Push = Callable[[str, bytes, bool], Awaitable[bool]]


class CollectionError(Exception):
    """A collection that cannot be created; the message says why."""


@dataclass
class Limits:
    timeout: float | None = None
    progress_timeout: float | None = None
    max_rows: int | None = None
    max_upload_bytes: int | None = None
    cpu_limit: float | None = None
    #: Seconds the collection waits for its client to start it before it expires.
    expires_in: float | None = None


def new_flow_id() -> str:
    return "F." + secrets.token_hex(8)


#: A collection prepared once (artifacts validated, definitions gathered), to be copied.
Template = tuple[FlowRecord, CollectionRequest]


def template_of(record: FlowRecord, payload: bytes) -> Template:
    """``build``'s result kept for copying (``copy_for``)."""
    request = decode_from_server(payload)
    if not isinstance(request, CollectionRequest):
        raise TypeError(f"not a collection request: {type(request).__name__}")
    return record, request


def copy_for(
    template: Template, client_id: str, now: float, expires: float
) -> tuple[FlowRecord, bytes]:
    """The template's collection for ``client_id`` with a fresh flow id: validating artifacts
    and gathering their definitions is the same work for every client (a hunt's, a new
    client's interrogation), so it is done once and copied."""
    record, request = template
    flow_id = new_flow_id()
    copy = dataclasses.replace(
        record, flow_id=flow_id, client_id=client_id, created=now, expires=expires
    )
    return copy, encode(msgspec.structs.replace(request, flow_id=flow_id))


class CollectionService:
    def __init__(
        self,
        datastore: Datastore,
        repository: ArtifactRepository,
        push: Push,
        default_timeout: float = 600.0,
        default_progress_timeout: float = 300.0,
        created: Callable[[FlowRecord], None] | None = None,
        default_expiry: float = DEFAULT_SCHEDULED_EXPIRY,
    ) -> None:
        self.datastore = datastore
        self.repository = repository
        #: Sends to a client wherever it is connected (``Fleet.push``).
        self.push = push
        #: Told of each flow stored, before its request is pushed (the ingestor's owner cache).
        self.created = created
        self.default_timeout = default_timeout
        self.default_progress_timeout = default_progress_timeout
        #: Seconds a collection waits for its client unless it says otherwise.
        self.default_expiry = default_expiry

    def prepare(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
        hunt_id: str | None = None,
        expires: float | None = None,
    ) -> tuple[FlowRecord, bytes]:
        """Validate and build the flow record and the request; nothing is stored yet.
        ``expires`` (a time) overrides the expiry ``limits`` or the default give."""
        if self.datastore.clients.get(client_id) is None:
            raise CollectionError(f"unknown client {client_id}")
        return self.build(client_id, artifacts, creator, permissions, limits, hunt_id, expires)

    def build(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
        hunt_id: str | None = None,
        expires: float | None = None,
    ) -> tuple[FlowRecord, bytes]:
        """``prepare`` without looking the client up (a hunt checks its request this way
        before it has clients). Refuses a request too large to ever reach an agent."""
        limits = limits or Limits()
        calls = [ArtifactCall(name=name, parameters=dict(params)) for name, params in artifacts]
        if not calls:
            raise CollectionError("a collection needs at least one artifact")
        runner = ArtifactRunner(self.repository, permissions=permissions)
        try:
            plans = [runner.plan(c.name, c.parameters) for c in calls]
        except ArtifactError as exc:
            raise CollectionError(str(exc)) from None
        queries = [
            q
            for plan in plans
            for q in [plan.artifact.precondition or ""]
            + [s.query for s in plan.artifact.sources]
            + [s.precondition or "" for s in plan.artifact.sources]
        ]
        used = {p.artifact.name: p.artifact for p in plans}
        for artifact in dependencies(self.repository.find, *queries):
            used.setdefault(artifact.name, artifact)
        resources = [p.artifact.resources for p in plans]
        timeout = limits.timeout or _sum_or_none(r.timeout for r in resources)
        flow_id = new_flow_id()
        request = CollectionRequest(
            flow_id=flow_id,
            hunt_id=hunt_id,
            artifacts=calls,
            definitions=[msgspec.to_builtins(a) for a in used.values()],
            permissions=sorted(permissions),
            timeout=timeout,
            max_rows=limits.max_rows,
            max_upload_bytes=limits.max_upload_bytes
            or _max_or_none(r.max_upload_bytes for r in resources),
            cpu_limit=limits.cpu_limit or _max_or_none(r.cpu_limit for r in resources),
        )
        now = time.time()
        record = FlowRecord(
            flow_id=flow_id,
            hunt_id=hunt_id,
            client_id=client_id,
            artifacts=[{"name": c.name, "parameters": c.parameters} for c in calls],
            request={
                "timeout": request.timeout,
                "max_rows": request.max_rows,
                "max_upload_bytes": request.max_upload_bytes,
                "cpu_limit": request.cpu_limit,
                "permissions": request.permissions,
            },
            creator=creator,
            created=now,
            started=None,
            finished=None,
            state="Scheduled",
            error=None,
            rows=0,
            bytes=0,
            uploads=0,
            upload_bytes=0,
            logs=0,
            last_seq=0,
            last_activity=None,
            sources={},
            timeout=timeout or self.default_timeout,
            progress_timeout=limits.progress_timeout or self.default_progress_timeout,
            expires=expires or now + (limits.expires_in or self.default_expiry),
        )
        payload = encode(request)
        if len(payload) > MAX_MESSAGE_BYTES:
            raise CollectionError(too_large(len(payload)))
        return record, payload

    def store(self, record: FlowRecord, payload: bytes) -> None:
        """Durably store the flow and its task, atomically (before any push)."""
        self.datastore.collections.create(record, task=payload)

    async def create(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
    ) -> FlowRecord:
        import asyncio

        record, payload = await asyncio.to_thread(
            self.prepare, client_id, artifacts, creator, permissions, limits
        )
        # Grouped with other sessions' writes: a burst of enrollments (each interrogated)
        # or of collections costs a few commits.
        await self.datastore.group.run(self.store, record, payload)
        if self.created is not None:
            self.created(record)
        await self.push(client_id, payload, True)
        return record

    async def refuse_undeliverable(self, flow_id: str, payload: bytes) -> bool:
        """True for a stored request too large for the agent to receive (stored by an older
        server, or before a limit shrank): its flow ends in Error and its task is removed,
        since sending it would cut the agent off at every reconnect and block its queue."""
        import asyncio

        if len(payload) <= MAX_MESSAGE_BYTES:
            return False
        reason = f"not delivered: {too_large(len(payload))}"
        await asyncio.to_thread(self.datastore.collections.withdraw, flow_id, time.time(), reason)
        log.warning("flow %s: %s", flow_id, reason)
        return True

    async def cancel(self, flow_id: str, reason: str = "cancelled by a user") -> bool:
        """Cancel a flow: no longer delivered, stopped on the agent if it runs there."""
        import asyncio

        record = await asyncio.to_thread(self.datastore.collections.get, flow_id)
        if record is None or record.state in FINAL_STATES:
            return False
        await asyncio.to_thread(self.datastore.tasks.cancel, flow_id)
        changed = await asyncio.to_thread(
            self.datastore.collections.transition, flow_id, "Cancelled", time.time(), reason
        )
        cancel = encode(CancelCollection(flow_id=flow_id, reason=reason))
        await self.push(record.client_id, cancel, False)
        return bool(changed)


def too_large(size: int) -> str:
    """Why a request of ``size`` bytes cannot be sent, and what to do instead."""
    return (
        f"the collection request would be {size:,} bytes, over the {MAX_MESSAGE_BYTES:,}-byte "
        "limit of one message to an agent: pass smaller parameters (or split the artifacts "
        "into several collections)"
    )


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _max_or_none(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None
