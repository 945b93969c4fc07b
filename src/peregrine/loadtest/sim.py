"""One simulated agent: the real handshake, framing and acknowledgements, canned answers.

It behaves like ``peregrine.agent.Agent`` on the wire — pinned TLS, a signed challenge,
enrollment with the secret, per-flow ordered messages kept until acknowledged and sent again
after a reconnect — but holds its unacknowledged messages in memory instead of a disk spool and
answers collections with canned rows instead of running queries, so thousands fit in a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from peregrine import __version__
from peregrine.agent.agent import backoff_delay
from peregrine.agent.identity import Identity
from peregrine.agent.outbox import START_HOLD_SECONDS
from peregrine.artifacts.model import Artifact
from peregrine.loadtest import canned
from peregrine.loadtest.keys import identity_from_raw, new_raw_key
from peregrine.protocol.messages import (
    BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Ack,
    CancelCollection,
    Challenge,
    CollectionRequest,
    EventAssignments,
    EventRows,
    FlowFinished,
    FlowMessage,
    FlowStarted,
    Hello,
    LogBatch,
    LogEntry,
    ProtocolError,
    Reidentify,
    Rejected,
    ResultBatch,
    SourceFinished,
    StorageUnavailable,
    UploadResume,
    Welcome,
    decode_from_server,
    encode,
    pack_flow_messages,
)

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

if TYPE_CHECKING:
    from peregrine.loadtest.fleet import Fleet

log = logging.getLogger(__name__)

#: Stop producing results while this many messages wait for acknowledgement (bounded memory).
ACK_WINDOW = 64
#: Keep result frames well under the protocol's frame limit.
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2
#: Remember this many finished flows per client, to ignore a request delivered twice.
RECENT_FLOWS = 32


class SimRejected(Exception):
    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Flow:
    __slots__ = ("acked", "cancel", "done", "next_seq", "request", "task")

    def __init__(self, request: CollectionRequest) -> None:
        self.request = request
        self.next_seq = 1
        self.acked = 0
        self.done = False
        self.cancel = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, SimRejected):
        return "rejected"
    if isinstance(exc, ConnectionClosed):
        return "closed_during_handshake"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


class SimAgent:
    """Simulated client ``index`` of a fleet (its host name is ``sim-<index>``)."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.raw_key = b""
        self._identity: Identity | None = None
        self.os = fleet.os_for(index)
        addresses = fleet.source_addresses
        self.source_address = addresses[index % len(addresses)] if addresses else None
        self.online = True
        self.ws: ClientConnection | None = None
        self.sessions = 0
        self.unacked: dict[tuple[str, int], bytes] = {}
        #: Whether this connection's server takes FlowBatch frames, and the messages kept to
        #: be packed into the next one (as the real agent's outbox does: agent/outbox.py).
        self.batches = False
        self._outgoing: list[bytes] = []
        self.flows: dict[str, _Flow] = {}
        self.recent: deque[str] = deque(maxlen=RECENT_FLOWS)
        self.seen_hunts: list[str] = []
        self.task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._acked: asyncio.Event | None = None
        self._paused_until = 0.0
        self.resender: asyncio.Task[None] | None = None
        #: Tasks sending event rows, by artifact (for this connection), and each stream's next
        #: row number (kept across connections, as the real agent's spool keeps it).
        self.event_tasks: dict[str, asyncio.Task[None]] = {}
        self.event_seq: dict[str, int] = {}

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            self._identity = identity_from_raw(self.raw_key)
        return self._identity

    @property
    def client_id(self) -> str:
        return self.identity.client_id

    @property
    def connected(self) -> bool:
        return self.ws is not None

    # -- lifecycle ----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Stay connected while online, reconnecting with jittered backoff, until the fleet
        stops."""
        attempt = 0
        while not self.fleet.stopping:
            if not self.online:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay, attempt = await self._attempt(attempt)
            if delay > 0:
                self._wake.clear()  # set_online and stop cut the wait short
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _attempt(self, attempt: int) -> tuple[float, int]:
        """One connection, until it ends: the delay before the next, and the failure count."""
        fleet, cfg = self.fleet, self.fleet.config
        url = _random.choice(fleet.urls)
        delay: float | None = None
        try:
            welcomed = await self._session(url)
        except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
            fleet.stats.errors[_error_kind(exc)] += 1
            log.debug("sim %d: connection failed: %s", self.index, exc)
            welcomed = False
        except SimRejected as exc:
            fleet.stats.errors["rejected"] += 1
            log.debug("sim %d: rejected: %s", self.index, exc)
            welcomed = False
            if exc.retry_after is not None:
                delay = min(exc.retry_after, cfg.poll_max)
        if fleet.stopping or not self.online:
            return 0.0, 0
        attempt = 0 if welcomed else attempt + 1
        if delay is None:
            delay = backoff_delay(attempt, cfg.poll_min, cfg.poll_max)  # as the real agent
        return delay, attempt

    async def disconnect(self, reason: str) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, reason)

    def _leaving(self) -> bool:
        """Whether this client should not (or no longer) be connected."""
        return not self.online or self.fleet.stopping

    def cancel_flows(self) -> None:
        for flow in self.flows.values():
            if flow.task is not None:
                flow.task.cancel()
        if self.resender is not None:
            self.resender.cancel()

    # -- one connection -----------------------------------------------------------------------

    async def _session(self, url: str) -> bool:
        fleet = self.fleet
        started = time.monotonic()
        extra: dict[str, Any] = {}
        if self.source_address:
            extra["local_addr"] = (self.source_address, 0)
        async with connect(
            url,
            ssl=fleet.ssl_context,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            proxy=None,
            user_agent_header=None,
            open_timeout=fleet.open_timeout,
            ping_interval=None,  # fleet.keepalive: one task for the fleet, not one each
            close_timeout=2,
            max_queue=4,
            **extra,
        ) as ws:
            if fleet.keepalive is not None:
                fleet.keepalive.hold(ws)
            try:
                return await self._login_and_serve(ws, started)
            finally:
                if fleet.keepalive is not None:
                    fleet.keepalive.release(ws)

    async def _login_and_serve(self, ws: ClientConnection, started: float) -> bool:
        """The handshake, then answer the server until the connection ends."""
        fleet = self.fleet
        challenge = decode_from_server(await asyncio.wait_for(ws.recv(), fleet.open_timeout))
        if not isinstance(challenge, Challenge):
            raise ProtocolError(f"expected a challenge, got {type(challenge).__name__}")
        identity = self.identity
        client_id = identity.client_id
        await ws.send(
            encode(
                Hello(
                    client_id=client_id,
                    public_key=identity.public_key_bytes,
                    signature=identity.sign(challenge.nonce + client_id.encode()),
                    agent_version=f"{__version__}+sim",
                    enrollment_secret=fleet.config.enrollment_secret,
                    seen_hunts=list(self.seen_hunts),
                )
            )
        )
        reply = decode_from_server(await asyncio.wait_for(ws.recv(), fleet.open_timeout))
        if isinstance(reply, Reidentify):
            await self._reidentify(reply.reason)
            return True
        if isinstance(reply, Rejected):
            raise SimRejected(reply.reason, reply.retry_after)
        if not isinstance(reply, Welcome):
            raise ProtocolError(f"expected welcome, got {type(reply).__name__}")
        fleet.note_welcome(self, time.monotonic() - started, reply.enrolled)
        if self._leaving():
            return True
        async with self._lock:  # resend what is owed, in order, before anything new
            self.batches, owed = reply.flow_batches, list(self.unacked.values())
            self._outgoing.clear()
            for packed in pack_flow_messages(owed) if self.batches else owed:
                await ws.send(packed)
            fleet.stats.messages_resent += len(owed)
            self.ws = ws
        fleet.stats.connected += 1
        try:
            if self._leaving():  # taken offline during the resend
                await ws.close(1000, "simulated client offline")
            async for frame in ws:
                await self._handle(ws, decode_from_server(frame))
        except ConnectionClosed:
            if self.online and not fleet.stopping:
                fleet.stats.errors["connection_lost"] += 1
        finally:
            self.ws = None
            fleet.stats.connected -= 1
            self._stop_events()
        return True

    async def _reidentify(self, reason: str) -> None:
        """Another connection holds our id: make a new key, as a cloned machine's agent would."""
        log.info("sim %d: told to re-identify (%s)", self.index, reason)
        self.fleet.stats.errors["reidentified"] += 1
        self.cancel_flows()
        self.flows.clear()
        self.unacked.clear()
        self.raw_key = new_raw_key()
        self._identity = None
        await self.fleet.replace_key(self.index, self.raw_key)

    async def _handle(self, ws: ClientConnection, message: object) -> None:
        if isinstance(message, Ack):
            self._ack(message.flow_id, message.seq)
        elif isinstance(message, CollectionRequest):
            self._start_flow(message)
        elif isinstance(message, CancelCollection):
            flow = self.flows.get(message.flow_id)
            if flow is not None:
                flow.cancel.set()
        elif isinstance(message, StorageUnavailable):
            self.fleet.stats.errors["storage_unavailable"] += 1
            self._pause(message.retry_after)
        elif isinstance(message, UploadResume):
            pass  # simulated clients never upload
        elif isinstance(message, EventAssignments):
            self._assign_events(ws, message)
        else:
            raise ProtocolError(f"unexpected {type(message).__name__} after the handshake")

    def _assign_events(self, ws: ClientConnection, assignments: EventAssignments) -> None:
        """Send canned event rows for each assigned artifact (none unless the fleet's
        ``events_per_second`` is set). Unacknowledged event batches are not sent again."""
        self._stop_events()
        if self.fleet.events_per_second <= 0:
            return
        for call in assignments.artifacts:
            self.event_tasks[call.name] = asyncio.ensure_future(
                self._send_events(ws, call.name, max(0.05, assignments.batch_seconds))
            )

    def _stop_events(self) -> None:
        for task in self.event_tasks.values():
            task.cancel()
        self.event_tasks.clear()

    async def _send_events(self, ws: ClientConnection, artifact: str, period: float) -> None:
        owed = 0.0
        last = time.monotonic()
        await asyncio.sleep(_random.random() * period)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            owed += self.fleet.events_per_second * (now - last)
            last, count = now, int(owed)
            if count == 0:
                continue
            owed -= count
            seq = self.event_seq.get(artifact, 1)
            rows = canned.event_rows(self.index, seq, count, time.time())
            message = EventRows(
                stream=f"events:{artifact}", seq=seq, artifact=artifact, source="",
                time=time.time(), columns=canned.EVENT_COLUMNS, rows=rows,
            )  # fmt: skip
            try:
                await ws.send(encode(message))
            except (WebSocketException, OSError):
                return
            self.event_seq[artifact] = seq + count
            self.fleet.stats.events_sent += count

    def _pause(self, seconds: float) -> None:
        """Hold results for ``seconds``, then send everything unacknowledged again (the
        server dropped what it could not store), as the real agent does."""
        self._paused_until = time.monotonic() + seconds
        if self.resender is None or self.resender.done():
            self.resender = asyncio.ensure_future(self._resend_after_pause())

    async def _resend_after_pause(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        async with self._lock:
            ws = self.ws
            if ws is None:
                return  # the next connection resends everything anyway
            for payload in list(self.unacked.values()):
                with contextlib.suppress(WebSocketException, OSError):
                    await ws.send(payload)
                self.fleet.stats.messages_resent += 1

    def _ack(self, flow_id: str, seq: int) -> None:
        self.fleet.stats.acks += 1
        flow = self.flows.get(flow_id)
        if flow is None:
            return
        for s in range(flow.acked + 1, seq + 1):
            self.unacked.pop((flow_id, s), None)
        flow.acked = max(flow.acked, seq)
        self._forget_if_settled(flow)
        if self._acked is not None:
            self._acked.set()

    def _forget_if_settled(self, flow: _Flow) -> None:
        """Drop a finished flow once the server has everything of it."""
        if flow.done and flow.acked >= flow.next_seq - 1:
            flow_id = flow.request.flow_id
            if self.flows.get(flow_id) is flow:
                del self.flows[flow_id]
                self.recent.append(flow_id)

    # -- answering collections ----------------------------------------------------------------

    def _start_flow(self, request: CollectionRequest) -> None:
        if request.flow_id in self.flows or request.flow_id in self.recent:
            return  # delivered again after a reconnect: it is already answered
        hunt = getattr(request, "hunt_id", None)
        if isinstance(hunt, str) and hunt and hunt not in self.seen_hunts:
            self.seen_hunts.append(hunt)
        flow = self.flows[request.flow_id] = _Flow(request)
        flow.task = asyncio.ensure_future(self._answer(flow))

    async def _emit(self, flow: _Flow, build: Callable[[int], FlowMessage]) -> int:
        """Give the message the flow's next seq, keep it until acknowledged, send it if
        connected (to a server taking FlowBatch frames: kept for the next one, sent by
        ``_flush``); returns its size."""
        while len(self.unacked) >= ACK_WINDOW:
            await self._flush()
            self._acked = self._acked or asyncio.Event()
            self._acked.clear()
            await self._acked.wait()
        async with self._lock:
            seq = flow.next_seq
            flow.next_seq += 1
            payload = encode(build(seq))
            self.unacked[(flow.request.flow_id, seq)] = payload
            if self.batches:
                self._outgoing.append(payload)
            else:
                await self._send(payload)
        if self.batches and sum(map(len, self._outgoing)) >= BATCH_BYTES:
            await self._flush()
        return len(payload)

    async def _send(self, frame: bytes) -> None:
        ws = self.ws
        if ws is not None and time.monotonic() >= self._paused_until:
            with contextlib.suppress(WebSocketException, OSError):
                await ws.send(frame)  # if it fails, the reconnect resends it

    async def _flush(self) -> None:
        """Send the kept messages, packed."""
        async with self._lock:
            payloads, self._outgoing = self._outgoing, []
            for frame in pack_flow_messages(payloads):
                await self._send(frame)

    async def _answer(self, flow: _Flow) -> None:
        fleet, request = self.fleet, flow.request
        flow_id = request.flow_id
        await self._emit(flow, lambda s: FlowStarted(flow_id=flow_id, seq=s, started=time.time()))
        delay = fleet.answer_delay_for(self.index)
        if delay > 0:
            # The real agent holds a lone start this long for the rest of the collection.
            held = min(delay, START_HOLD_SECONDS) if self.batches else 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flow.cancel.wait(), held)
            if delay >= START_HOLD_SECONDS:
                await self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flow.cancel.wait(), delay - held)
        definitions = {d.get("name"): d for d in request.definitions}
        failures: list[str] = []
        for call in request.artifacts:
            if flow.cancel.is_set():
                break
            raw = definitions.get(call.name)
            try:
                artifact = msgspec.convert(raw, Artifact)
            except (msgspec.ValidationError, TypeError) as exc:
                failures.append(f"{call.name}: no usable definition ({exc})")
                continue
            for source in artifact.sources:
                if flow.cancel.is_set():
                    break
                await self._answer_source(flow, artifact.name, source.name)
        if failures:
            entries: list[LogEntry] = [
                {"time": time.time(), "level": "error", "message": m} for m in failures
            ]
            await self._emit(flow, lambda s: LogBatch(flow_id=flow_id, seq=s, entries=entries))
        status, error = "finished", None
        if flow.cancel.is_set():
            status, error = "cancelled", "cancelled by the server"
            fleet.stats.flows_cancelled += 1
        elif failures:
            status, error = "error", "; ".join(failures)[:2000]
        await self._emit(
            flow,
            lambda s: FlowFinished(
                flow_id=flow_id, seq=s, status=status, error=error, finished=time.time()
            ),
        )
        await self._flush()
        flow.done = True
        fleet.stats.flows_answered += 1
        self._forget_if_settled(flow)

    async def _answer_source(self, flow: _Flow, artifact: str, source: str) -> None:
        fleet, request = self.fleet, flow.request
        flow_id = request.flow_id
        started = time.monotonic()
        if artifact == canned.INTERROGATION:
            columns, rows = self._interrogation(source)
            batches: list[list[list[Any]]] = [rows] if rows else []
            total = len(rows)
        else:
            columns = canned.CANNED_COLUMNS
            total = fleet.rows_for(self.index, artifact, source)
            if request.max_rows is not None:
                total = min(total, request.max_rows)
            batches = []
        sent = 0
        if batches:
            for batch in batches:
                await self._send_rows(flow, artifact, source, columns, batch)
            sent = total
        else:
            per_batch = max(1, min(request.batch_rows, MAX_BATCH_BYTES // (fleet.row_bytes + 16)))
            while sent < total and not flow.cancel.is_set():
                end = min(total, sent + per_batch)
                batch = canned.canned_rows(sent, end, fleet.payload)
                await self._send_rows(flow, artifact, source, columns, batch)
                sent = end
        elapsed = time.monotonic() - started
        await self._emit(
            flow,
            lambda s: SourceFinished(
                flow_id=flow_id, seq=s, artifact=artifact, source=source,
                status="finished", rows=sent, elapsed=elapsed,
            ),
        )  # fmt: skip

    async def _send_rows(
        self,
        flow: _Flow,
        artifact: str,
        source: str,
        columns: list[str],
        rows: list[list[Any]],
    ) -> None:
        flow_id = flow.request.flow_id
        size = await self._emit(
            flow,
            lambda s: ResultBatch(
                flow_id=flow_id, seq=s, artifact=artifact, source=source,
                columns=columns, rows=rows,
            ),
        )  # fmt: skip
        stats = self.fleet.stats
        stats.rows_sent += len(rows)
        stats.bytes_sent += size

    def _interrogation(self, source: str) -> tuple[list[str], list[list[Any]]]:
        if source == "host":
            address = self.source_address or "127.0.0.1"
            row = canned.host_row(self.index, self.os, address, self.fleet.boot_time)
            return canned.HOST_COLUMNS, [row]
        if source == "users":
            return canned.USER_COLUMNS, canned.user_rows(self.os)
        return canned.CANNED_COLUMNS, []
