"""One agent connection on a frontend: the handshake, then messages until it ends.

The handshake proves the agent holds the key its client id is derived from (it signs a fresh
nonce), enrolls a new client if it knows the enrollment secret, and resolves a duplicate client
id: if the earlier connection still answers a ping, the newcomer is a clone and is told to make a
new identity; if not, the earlier connection was stale and is replaced. Then pending tasks are
delivered and flow messages stored. A malformed or oversized message, or a write to a flow that
is not the agent's, closes this connection with a logged reason; nobody else is affected.

What a connection may cost is bounded (``ServerConfig.limits``): before login, a few bytes
(``prelogin.py``), a deadline and one of a fixed number of handshake slots; new clients enroll
at a set rate; after login, the bytes and cells it sends a second (``budget.py``: past them the
session stops reading from it, which pushes back on the agent without dropping anything).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from peregrine.agent.identity import client_id_for, verify
from peregrine.datastore import DatastoreUnavailable, FlowRecord, KeyMismatch
from peregrine.filestore import StorageFull
from peregrine.logcontext import log_context, set_log_context
from peregrine.metrics.instruments import ENROLLMENTS, ENROLLMENTS_REFUSED, ERRORS
from peregrine.protocol.messages import (
    Ack,
    Challenge,
    EventRows,
    EventStatus,
    FlowBatch,
    FlowMessage,
    Hello,
    LogBatch,
    Message,
    ProtocolError,
    Reidentify,
    Rejected,
    ResultBatch,
    StorageUnavailable,
    UploadChunk,
    UploadResume,
    Welcome,
    decode_from_agent,
    encode,
)
from peregrine.server.budget import ConnectionBudget
from peregrine.server.ingest import NotYourFlow, Outcome
from peregrine.server.prelogin import AgentConnection

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

if TYPE_CHECKING:
    from peregrine.server.app import Server

log = logging.getLogger(__name__)

STORAGE_RETRY_SECONDS = 30.0
#: An event stream is named after its artifact (``agent/events.py``'s ``stream_key``).
EVENT_STREAM_PREFIX = "events:"
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
#: Most messages stored as one run (websockets buffers them anyway: see max_queue), and the
#: frame bytes after which a run stops taking more (what a session holds decoded at once).
READ_AHEAD = 16
RUN_BYTES = 1 << 20
#: How often a draining connection looks whether its store has finished.
DRAIN_POLL = 0.02


class ServerBusy(Exception):
    """No handshake slot came free before the handshake deadline."""


class AgentSession:
    """Implements the registry's ``Connection`` for one websocket.

    One lives per connected agent for months, so it keeps little: slots, no per-session
    containers until they are needed."""

    __slots__ = (
        "_budget", "_held", "_send_lock", "_storing", "_tasks", "address", "client_id",
        "enrolled", "seen_hunts", "server", "ws",
    )  # fmt: skip

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.client_id = ""
        #: The hunts the agent says it has (from its hello until its check-in).
        self.seen_hunts: Sequence[str] = ()
        #: This connection enrolled the client (until its check-in).
        self.enrolled = False
        peer = ws.remote_address
        self.address: str | None = str(peer[0]) if peer else None
        # Held while the welcome is sent (pushes wait for it: it must be the first message);
        # None otherwise (websockets sends whole messages one after the other by itself).
        self._send_lock: asyncio.Lock | None = None
        # Flow -> the first seq refused for want of space (see _store_flow_messages); made
        # when the filestore first fills up.
        self._held: dict[str, int] | None = None
        # What this connection may still send; made with its first message.
        self._budget: ConnectionBudget | None = None
        # A run of messages is being stored and acknowledged (a drain waits for it).
        self._storing = False
        # The tasks stored with the enrollment this connection made (until its check-in).
        self._tasks: list[tuple[str, bytes]] | None = None

    # -- the registry's Connection protocol ------------------------------------------------

    async def send(self, payload: bytes) -> None:
        login = self._send_lock
        if login is None:
            await self.ws.send(payload)
            return
        async with login:
            await self.ws.send(payload)

    async def alive(self, timeout: float) -> bool:
        try:
            pong = await self.ws.ping()
            await asyncio.wait_for(pong, timeout)
        except (TimeoutError, ConnectionClosed, RuntimeError):
            return False
        return True

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    async def drain(self, code: int, reason: str) -> None:
        """Close once the run of messages being stored is stored and acknowledged, so the
        agent has nothing of it to send again elsewhere (the caller bounds the wait)."""
        while self._storing:
            await asyncio.sleep(DRAIN_POLL)
        await self.ws.close(code, reason)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """The connection's life (websockets' handler task runs it, with no frame of ours
        between): kept alive by the frontend's keepalive, tracked for its shutdown."""
        server = self.server
        task = asyncio.current_task()
        if task is not None:
            server.connections.track(task)
        server.connections.keepalive.hold(self.ws)
        server.heap.note()
        try:
            try:
                if not await self._handshake():
                    return
            except ConnectionClosed as exc:
                server.connections.remove(self)  # it may have registered before the welcome
                _log_closed(exc, self.address)
                return
            except (ServerBusy, DatastoreUnavailable) as exc:
                server.connections.remove(self)
                if isinstance(exc, DatastoreUnavailable):
                    ERRORS.labels(kind="datastore_unavailable").inc()
                log.warning("refused a login from %s: %s", self.address, exc)
                await self.ws.close(TRY_AGAIN_LATER, str(exc)[:120])
                return
            except (TimeoutError, ProtocolError) as exc:
                server.connections.remove(self)
                ERRORS.labels(kind="agent_protocol").inc()
                reason = str(exc) or "no login within the handshake time-out"
                log.warning("handshake from %s failed: %s", self.address, reason)
                await self.ws.close(POLICY_VIOLATION, reason[:120])
                return
            server.events.client_connected(self.client_id)
            server.presence.online(self.client_id)
            try:
                await self.deliver_pending()
                await server.services.client_connected(
                    self.client_id, self.seen_hunts, enrolled=self.enrolled
                )
                self.seen_hunts = ()  # used once, at check-in
                self.enrolled = False
                await server.services.event_monitoring.push(self.client_id)
                await self._serve()
            except ConnectionClosed as exc:
                _log_closed(exc, f"{self.client_id} ({self.address})")
            except (ProtocolError, NotYourFlow) as exc:
                ERRORS.labels(kind="agent_protocol").inc()
                log.warning("closing %s (%s): %s", self.client_id, self.address, exc)
                await self.ws.close(POLICY_VIOLATION, str(exc)[:120])
            except DatastoreUnavailable as exc:
                # Nothing unstored was acknowledged: the agent keeps it and sends it again.
                ERRORS.labels(kind="datastore_unavailable").inc()
                log.warning("closing %s (%s): %s", self.client_id, self.address, exc)
                await self.ws.close(TRY_AGAIN_LATER, "datastore unavailable; try again later")
            finally:
                server.connections.remove(self)
                server.events.client_disconnected(self.client_id)
                if self.client_id not in server.connections:  # not replaced by a reconnect
                    server.presence.offline(self.client_id)
                server.seen.note(self.client_id, time.time(), self.address)
        finally:
            server.connections.keepalive.release(self.ws)
            server.heap.note()
            if task is not None:
                server.connections.untrack(task)

    async def _handshake(self) -> bool:
        """Log the agent in, holding one of the frontend's handshake slots throughout."""
        slots = self.server.connections.handshakes
        deadline = asyncio.get_running_loop().time() + self.server.config.limits.handshake_timeout
        try:
            async with asyncio.timeout_at(deadline):
                await slots.acquire()
        except TimeoutError:
            raise ServerBusy("too many logins in progress; try again later") from None
        try:
            async with asyncio.timeout_at(deadline):  # what a stranger controls: bounded
                hello, nonce = await self._hello()
            return await self._login(hello, nonce)
        finally:
            slots.release()

    async def _hello(self) -> tuple[Hello, bytes]:
        nonce = os.urandom(32)
        await self.ws.send(encode(Challenge(nonce=nonce, server_time=time.time())))
        hello = decode_from_agent(await self.ws.recv())
        if not isinstance(hello, Hello):
            raise ProtocolError(f"expected hello, got {type(hello).__name__}")
        if len(hello.public_key) != 32 or client_id_for(hello.public_key) != hello.client_id:
            raise ProtocolError("the client id does not belong to the public key")
        if not verify(hello.public_key, hello.signature, nonce + hello.client_id.encode()):
            raise ProtocolError("the challenge signature is invalid")
        return hello, nonce

    async def _login(self, hello: Hello, nonce: bytes) -> bool:
        """The agent holds the key of ``hello.client_id``: enroll it if new, settle a duplicate
        id, register the connection and welcome it."""
        client_id = hello.client_id
        connections = self.server.connections
        with connections.watch_pushes(client_id) as pushes:
            admitted = await self._admit(hello)
            if admitted is None:
                return False
            enrolled, tasks = admitted
            if not await self._register(client_id):
                return False
        # A request pushed before the registration went nowhere: then read what is pending.
        # With other frontends (a shared bus) their pushes arrive as notices, which can be
        # lost; the tasks are read as every other login does, so none waits on the bus.
        if enrolled and not pushes.missed and not self.server.bus.shared:
            self._tasks = tasks
        try:
            self.seen_hunts = list(hello.seen_hunts)
            self.server.seen.note(client_id, time.time(), self.address)
            if isinstance(self.ws, AgentConnection):
                self.ws.logged_in()  # before the welcome: only then may the agent send more
            await self.ws.send(
                encode(
                    Welcome(
                        client_id=client_id,
                        server_time=time.time(),
                        enrolled=enrolled,
                        flow_batches=True,
                    )
                )
            )
        finally:
            login, self._send_lock = self._send_lock, None
            if login is not None:
                login.release()
        if enrolled:
            ENROLLMENTS.inc()
            log.info("enrolled %s from %s", client_id, self.address)
            self.enrolled = True  # its interrogation is delivered at check-in
        return True

    async def _admit(self, hello: Hello) -> tuple[bool, list[tuple[str, bytes]]] | None:
        """Whether the client is new (enrolled now), with the tasks stored with it; None if
        it was refused (told why). A client this process has not indexed that brings the
        secret is enrolled without reading it first: the enrollment itself finds one that is
        enrolled already, and checks its key."""
        client_id = hello.client_id
        clients = self.server.datastore.clients
        secret = self.server.enrollment_secret
        given = (hello.enrollment_secret or "").encode()
        secret_ok = hmac.compare_digest(given, secret.encode())
        unread = secret_ok and self.server.services.unknown(client_id)
        if not unread:
            record = await asyncio.to_thread(clients.get, client_id)
            if record is not None:
                return await self._known(record.public_key, hello.public_key)
        if not secret_ok:
            log.warning("refused enrollment of %s from %s: wrong secret", client_id, self.address)
            ENROLLMENTS_REFUSED.labels(reason="secret").inc()
            await self._reject("enrollment refused: the enrollment secret is wrong")
            return None
        wait = self.server.connections.enrollments.try_take()
        if wait > 0:
            if unread and (record := await asyncio.to_thread(clients.get, client_id)):
                return await self._known(record.public_key, hello.public_key)
            log.warning(
                "refused enrollment of %s from %s: over the enrollment rate "
                "(limits.enrollments_per_second)", client_id, self.address,
            )  # fmt: skip
            ENROLLMENTS_REFUSED.labels(reason="rate").inc()
            retry = wait + _random.uniform(1.0, 5.0)
            await self._reject(
                f"enrollment refused: too many new clients at once; retry in {retry:.0f} s",
                retry_after=retry,
            )
            return None
        try:
            # Grouped, its interrogation stored with it: a burst of new agents enrolls in a
            # few commits, not two each.
            return await self.server.services.enroll(client_id, hello.public_key)
        except KeyMismatch:
            await self._reject("this client id is enrolled with another key")
            return None

    async def _known(
        self, stored: bytes, presented: bytes
    ) -> tuple[bool, list[tuple[str, bytes]]] | None:
        """An enrolled client: admitted if it presented the key it enrolled with."""
        if stored != presented:
            await self._reject("this client id is enrolled with another key")
            return None
        return False, []

    async def _register(self, client_id: str) -> bool:
        """Settle a duplicate id and register this connection; True with the send lock held
        (the welcome must be the first message), False if the newcomer was told to make a
        new identity."""
        connections = self.server.connections
        async with connections.claim(client_id):
            earlier = connections.get(client_id)
            if earlier is not None and await earlier.alive(timeout=3.0):
                log.warning(
                    "duplicate client id %s: connected from %s and %s; telling the newcomer "
                    "to make a new identity (cloned machine?)",
                    client_id, earlier.address, self.address,
                )  # fmt: skip
                await self.ws.send(
                    encode(Reidentify(reason="another agent is connected as this id"))
                )
                await self.ws.close(1000, "re-identify")
                self.server.events.clone_detected(client_id)
                return False
            if earlier is not None:
                await earlier.close(1000, "replaced by a new connection")
            self.client_id = client_id
            set_log_context(client_id=client_id)  # every later line of this connection
            # Pushes (send) wait until the welcome is out: it must be the first message.
            self._send_lock = login = asyncio.Lock()
            await login.acquire()
            connections.add(self)  # before the welcome: a second comer now finds us
        return True

    async def _reject(self, reason: str, retry_after: float = 300) -> None:
        await self.ws.send(encode(Rejected(reason=reason, retry_after=retry_after)))
        await self.ws.close(1000, reason[:120])

    async def deliver_pending(self) -> None:
        """Send every stored task of this client (the agent ignores one it already has); one
        too large for the agent ends its flow in Error instead of blocking the queue. At the
        check-in of a client this connection enrolled, they are the ones stored with it."""
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            tasks = await asyncio.to_thread(self.server.datastore.tasks.pending, self.client_id)
        for flow_id, payload in tasks:
            if await self.server.collections.refuse_undeliverable(flow_id, payload):
                self.server.events.flow_changed(flow_id)
                continue
            await self.send(payload)

    async def _serve(self) -> None:
        """Store what the agent sends. The messages that arrived while the last ones were
        being stored are stored together (one file-thread trip, one piece of the group
        commit, one cumulative ack per flow), which is most of them once agents answer in
        bursts. Waiting costs one future per connection beyond websockets' own state."""
        ws = self.ws
        while True:
            if isinstance(ws, AgentConnection):  # idle, it waits on one future, not recv()
                while (arrival := ws.arrival()) is not None:
                    await arrival  # bytes came (a ping, part of a frame) or the connection ended
            try:
                frame = await self.ws.recv()
            except ConnectionClosedOK:
                return
            run: list[Message] = _unpacked(decode_from_agent(frame))
            size = len(frame)
            while len(run) < READ_AHEAD and size < RUN_BYTES and _frames_waiting(self.ws):
                try:
                    frame = await self.ws.recv()
                except ConnectionClosed:
                    break  # store what came; the next recv() reports the close
                run.extend(_unpacked(decode_from_agent(frame)))
                size += len(frame)
            self._storing = True
            try:
                await self._pay(size, run)
                await self._store(run)
            finally:
                self._storing = False

    async def _pay(self, size: int, run: list[Message]) -> None:
        """Charge what the run costs; past the connection's budget, wait until it is paid
        before storing it and reading more (websockets then stops reading the socket once its
        queue is full: TCP pushes back on the agent, whose messages wait in its spool)."""
        if self._budget is None:
            limits = self.server.config.limits
            self._budget = ConnectionBudget(limits.bytes_per_second, limits.cells_per_second)
        wait = self._budget.charge(size, sum(_cells(message) for message in run))
        if wait > 0:
            await asyncio.sleep(wait)

    async def _store(self, run: list[Message]) -> None:
        """Store messages in arrival order: flow messages in runs, upload chunks one by one."""
        start = 0
        while start < len(run):
            message = run[start]
            if isinstance(message, UploadChunk):
                await self._store_chunk(message)
                start += 1
            elif isinstance(message, FlowMessage):
                end = start
                while end < len(run) and isinstance(run[end], FlowMessage):
                    end += 1
                await self._store_flow_messages(cast(list[FlowMessage], run[start:end]))
                start = end
            elif isinstance(message, EventRows):
                end = start
                while end < len(run) and isinstance(run[end], EventRows):
                    end += 1
                await self._store_events(cast(list[EventRows], run[start:end]))
                start = end
            elif isinstance(message, EventStatus):
                await self.server.event_ingestor.status(self.client_id, message)
                start += 1
            else:
                raise ProtocolError(f"unexpected {type(message).__name__}")

    async def _store_chunk(self, chunk: UploadChunk) -> None:
        try:
            outcome = await self.server.ingestor.store_chunk(self.client_id, chunk)
        except (ValueError, LookupError) as exc:
            # Content the stores refuse (a chunk past the declared size, an upload never
            # started): the agent is broken or hostile.
            raise ProtocolError(f"invalid {type(chunk).__name__}: {exc}") from None
        except StorageFull as exc:
            await self._storage_full(exc)
            return
        await self._answer([(chunk.flow_id, outcome)])

    async def _store_flow_messages(self, messages: list[FlowMessage]) -> None:
        # After a message refused for want of space, later messages of its flow are not
        # stored nor acknowledged until it comes again: storing them would move the flow's
        # last seq past it, and its resend would then be dropped as a duplicate.
        # Once the refused message is in the run, what follows it in the run is in order
        # again and is stored with it: dropped, it would be sent again only after the next
        # refusal or reconnect, and its seq would be passed meanwhile (rows lost).
        held = self._held if self._held is not None else {}
        wanted = []
        resumed: set[str] = set()
        for message in messages:
            first_refused = held.get(message.flow_id)
            if first_refused is None or message.flow_id in resumed:
                wanted.append(message)
            elif message.seq <= first_refused:
                wanted.append(message)
                if message.seq == first_refused:
                    resumed.add(message.flow_id)
        if not wanted:
            return
        try:
            outcomes, full = await self.server.ingestor.flow_messages(self.client_id, wanted)
        except (ValueError, LookupError) as exc:
            # Rows wider than their columns, an unknown upload: broken or hostile.
            raise ProtocolError(f"invalid message: {exc}") from None
        stored = wanted[: len(outcomes)]
        for message in stored:
            if held.get(message.flow_id) == message.seq:
                del held[message.flow_id]
        await self._answer(
            [(message.flow_id, outcome) for message, outcome in zip(stored, outcomes, strict=True)]
        )
        if full is not None:
            refused = wanted[len(outcomes)]
            if self._held is None:
                self._held = {}
            self._held.setdefault(refused.flow_id, refused.seq)
            await self._storage_full(full)
            # The rest of the run after the refused message: other flows may still be stored.
            rest = wanted[len(outcomes) + 1 :]
            if rest:
                await self._store_flow_messages(rest)

    async def _store_events(self, batches: list[EventRows]) -> None:
        """Store event batches, then acknowledge each stream's last one (acks are cumulative).
        After a batch refused for want of space, its stream's later batches wait for it (as
        a flow's messages do: see ``_store_flow_messages``)."""
        held = self._held if self._held is not None else {}
        wanted = []
        for batch in batches:
            if batch.stream != f"{EVENT_STREAM_PREFIX}{batch.artifact}":
                raise ProtocolError(f"event stream {batch.stream!r} is not its artifact's")
            first_refused = held.get(batch.stream)
            if first_refused is None or batch.seq <= first_refused:
                wanted.append(batch)
        if not wanted:
            return
        try:
            stored, full = await self.server.event_ingestor.store(self.client_id, wanted)
        except ValueError as exc:  # rows wider than their columns: broken or hostile
            raise ProtocolError(f"invalid event rows: {exc}") from None
        acks: dict[str, int] = {}
        for batch in wanted[:stored]:
            acks[batch.stream] = max(batch.seq, acks.get(batch.stream, 0))
            if held.get(batch.stream) == batch.seq:
                del held[batch.stream]
        for stream, seq in acks.items():
            await self.send(encode(Ack(flow_id=stream, seq=seq)))
        if full is not None:
            refused = wanted[stored]
            if self._held is None:
                self._held = {}
            self._held.setdefault(refused.stream, refused.seq)
            await self._storage_full(full)
            rest = [b for b in wanted[stored + 1 :] if b.stream != refused.stream]
            if rest:
                await self._store_events(rest)

    async def _answer(self, outcomes: list[tuple[str, Outcome]]) -> None:
        """Acknowledge (once per flow: acks are cumulative), tell where uploads resume, and
        announce flows that changed or finished."""
        acks: dict[str, int] = {}
        for flow_id, outcome in outcomes:
            if outcome.resume is not None:
                resume_flow, upload_id, offset = outcome.resume
                resume = UploadResume(
                    flow_id=resume_flow, upload_id=upload_id, offset=offset, refused=outcome.refused
                )
                await self.send(encode(resume))
            if outcome.ack is not None:
                acks[flow_id] = max(outcome.ack, acks.get(flow_id, 0))
        for flow_id, seq in acks.items():
            await self.send(encode(Ack(flow_id=flow_id, seq=seq)))
        for flow_id, outcome in outcomes:
            if outcome.state_changed or outcome.finished:
                self.server.events.flow_changed(flow_id)
            if outcome.finished:
                with log_context(flow_id=flow_id, hunt_id=outcome.finished.hunt_id or None):
                    log.info("collection %s ended: %s", flow_id, outcome.finished.state)
                    await self._flow_finished(outcome.finished)

    async def _flow_finished(self, record: FlowRecord) -> None:
        """What follows a finished flow (an interrogation's facts, hunts it now matches). Its
        rows are stored and acknowledged already, so the datastore going away here must not
        close the connection: the resync reads the client and the hunts again once it is
        back."""
        try:
            await self.server.services.flow_finished(self.client_id, record)
        except DatastoreUnavailable:
            self.server.resync.request()

    async def _storage_full(self, exc: StorageFull) -> None:
        log.error("filestore full, holding %s's results: %s", self.client_id, exc)
        await self.send(encode(StorageUnavailable(retry_after=STORAGE_RETRY_SECONDS)))


def _cells(message: Message) -> int:
    """The values a message holds (rows times columns, log entries' fields), at least one."""
    if isinstance(message, ResultBatch | EventRows):
        return max(1, len(message.rows) * len(message.columns))
    if isinstance(message, LogBatch):
        return max(1, sum(len(entry) for entry in message.entries))
    return 1


def _unpacked(message: Message) -> list[Message]:
    """A ``FlowBatch`` is its messages, stored as if each had come in a frame of its own."""
    if isinstance(message, FlowBatch):
        return list(message.messages)
    return [message]


def _frames_waiting(ws: ServerConnection) -> bool:
    """Whether websockets already holds received frames (so ``recv`` will not wait).

    websockets has no public call for this; its receive queue is read here, and
    tests/server/test_session.py fails if a websockets upgrade moves it (then runs just hold one
    message each: slower, never wrong)."""
    assembler = getattr(ws, "recv_messages", None)
    frames = getattr(assembler, "frames", None)
    try:
        return frames is not None and len(frames) > 0
    except TypeError:
        return False


def _log_closed(exc: ConnectionClosed, who: str | None) -> None:
    """A connection that ended; one closed by us for a frame over the size limit is logged
    like any other protocol violation (websockets closes those itself, with 1009)."""
    if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG:
        log.warning("closing %s: %s", who, exc.sent.reason or "a message over the size limit")
    else:
        log.debug("connection of %s ended: %s", who, exc)
