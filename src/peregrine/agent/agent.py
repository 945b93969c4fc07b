"""The agent: one persistent connection to a frontend, collections run in threads.

It picks a frontend at random, proves its identity (a signed challenge), then reads requests and
sends whatever is in its spool, in order, until the server acknowledges it. When a connection
fails it waits with jittered exponential backoff (at most ``poll_max``) and tries another
frontend. Everything it owes the server survives restarts in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from peregrine import __version__
from peregrine.agent.identity import Identity, load_or_create, reidentify
from peregrine.agent.metrics_file import keep_writing, stop_writing
from peregrine.agent.outbox import Outbox
from peregrine.agent.spool import Spool
from peregrine.agent.stats import STATS
from peregrine.config import ClientConfig, client_ssl_context
from peregrine.logcontext import set_log_context
from peregrine.protocol.messages import (
    MAX_MESSAGE_BYTES,
    UPLOAD_CHUNK_BYTES,
    Ack,
    CancelCollection,
    Challenge,
    CollectionRequest,
    EventAssignments,
    EventStatus,
    FlowFinished,
    FlowStarted,
    Hello,
    ProtocolError,
    Reidentify,
    Rejected,
    StorageUnavailable,
    UploadChunk,
    UploadResume,
    Welcome,
    decode_from_server,
    encode,
)

_random = random.Random()  # noqa: S311 (jitter; own state, so the global generator stays seeded)

if TYPE_CHECKING:
    from peregrine.agent.collection import CollectionJob
    from peregrine.agent.events import EventRunner
    from peregrine.engine.spare import SpareWorkers

log = logging.getLogger(__name__)


class AgentRejected(Exception):
    """The server refused this agent (bad enrollment secret, ...): retry only after backoff."""


def backoff_delay(attempt: int, poll_min: float, poll_max: float) -> float:
    """Jittered exponential backoff: half to all of ``poll_min * 2**attempt``, capped."""
    ceiling = min(poll_max, poll_min * (2 ** min(attempt, 30)))
    return _random.uniform(ceiling / 2, ceiling)


def choose_frontend(urls: list[str], failed: str | None) -> str:
    """A random frontend, avoiding the one that just failed when there is another."""
    others = [u for u in urls if u != failed] or urls
    return _random.choice(others)


class Agent:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.identity: Identity = load_or_create(Path(config.writeback_path))
        self.spool = Spool(Path(config.spool_dir) / "spool.db", config.max_spool_bytes)
        self.work_dir = Path(config.spool_dir) / "flows"
        self.jobs: dict[str, CollectionJob] = {}
        self.connected = asyncio.Event()
        self.sessions = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        #: Set when the server refused to store something: everything unacknowledged is sent
        #: again after the pause (the server stores a flow's messages only in order).
        self._resend = False
        self._upload_tasks: dict[str, asyncio.Task[None]] = {}
        self._threads: set[threading.Thread] = set()
        #: The event artifacts assigned to this client, running (made on the first set).
        self.events: EventRunner | None = None
        #: The latest status of each event artifact, sent at each connection and on change.
        self.event_statuses: dict[str, EventStatus] = {}
        self._statuses_lock = threading.Lock()
        #: The last assignment set, so a restarted agent watches again before it connects.
        self._assignments_path = Path(config.spool_dir) / "event-assignments.msgpack"
        #: Warm query workers (engine/spare.py), made with the first collection or event set.
        self._spares: SpareWorkers | None = None
        self._spares_lock = threading.Lock()

    @property
    def client_id(self) -> str:
        return self.identity.client_id

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected until ``stop`` is set."""
        self._loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        self._end_interrupted_flows()
        await asyncio.to_thread(self._resume_events)
        metrics = self._start_metrics_file()
        attempt, failed = 0, None
        while not stop.is_set():
            url = choose_frontend(self.config.server_urls, failed)
            session = asyncio.ensure_future(self._session(url))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if session not in done:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await session
                break
            try:
                welcomed = session.result()
                failed = None
            except (
                TimeoutError,
                OSError,
                WebSocketException,
                ProtocolError,
                AgentRejected,
            ) as exc:
                log.warning("connection to %s failed: %s", url, exc)
                welcomed, failed = False, url
            attempt = 0 if welcomed else attempt + 1
            delay = backoff_delay(attempt, self.config.poll_min, self.config.poll_max)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await stop_writing(metrics)
        for job in list(self.jobs.values()):
            job.cancel(shutdown=True)
        await asyncio.to_thread(self._join_jobs, 15.0)
        if self.events is not None:
            await asyncio.to_thread(self.events.stop)
        if self._spares is not None:
            await asyncio.to_thread(self._spares.close)

    def _start_metrics_file(self) -> asyncio.Task[None] | None:
        """The metrics file (``metrics_file``), kept current while the agent runs."""
        if not self.config.metrics_file:
            return None
        path, interval = Path(self.config.metrics_file), self.config.metrics_interval
        return asyncio.create_task(keep_writing(self, path, interval))

    def spares(self) -> SpareWorkers | None:
        """The warm query workers the collections and event artifacts take from (None when the
        configuration keeps none); made on first use, when the engine layer is loaded anyway."""
        if self.config.spare_workers == 0:
            return None
        with self._spares_lock:
            if self._spares is None:
                from peregrine.engine.spare import SpareWorkers

                self._spares = SpareWorkers(
                    self.config.spare_workers, self.config.spare_worker_idle
                )
            return self._spares

    def spare_pids(self) -> list[int]:
        """The process ids of the warm query workers waiting now."""
        return self._spares.pids if self._spares is not None else []

    def _join_jobs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.spool.close()

    def _end_interrupted_flows(self) -> None:
        """A flow that was running when the agent stopped cannot resume its query: say so,
        keeping everything it already produced."""
        for flow_id in self.spool.interrupted_flows():
            if flow_id in self.jobs:
                continue

            def interrupted(seq: int, f: str = flow_id) -> bytes:
                return encode(
                    FlowFinished(
                        flow_id=f,
                        seq=seq,
                        status="error",
                        error="the agent restarted during the collection; results sent "
                        "before that were kept",
                        finished=time.time(),
                    )
                )

            self.spool.append(flow_id, interrupted)
            self.spool.finish_flow(flow_id)

    # -- one connection -----------------------------------------------------------------------

    async def _session(self, url: str) -> bool:
        """Connect, authenticate, then serve until the connection ends. True if welcomed."""
        ssl_context = client_ssl_context(self.config)
        async with connect(
            url,
            ssl=ssl_context,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=30,
            ping_interval=30,
            ping_timeout=60,
            close_timeout=5,
        ) as ws:
            challenge = decode_from_server(await asyncio.wait_for(ws.recv(), 30))
            if not isinstance(challenge, Challenge):
                raise ProtocolError(f"expected a challenge, got {type(challenge).__name__}")
            client_id = self.identity.client_id
            await ws.send(
                encode(
                    Hello(
                        client_id=client_id,
                        public_key=self.identity.public_key_bytes,
                        signature=self.identity.sign(challenge.nonce + client_id.encode()),
                        agent_version=__version__,
                        enrollment_secret=self.config.enrollment_secret,
                        seen_hunts=await asyncio.to_thread(self.spool.seen_hunts),
                    )
                )
            )
            reply = decode_from_server(await asyncio.wait_for(ws.recv(), 30))
            if isinstance(reply, Reidentify):
                log.warning("server says %s is a clone (%s): new identity", client_id, reply.reason)
                self.identity = reidentify(Path(self.config.writeback_path))
                # What the spool holds was copied from the original machine, which sends it
                # itself; under the new identity it would be writing to flows not ours.
                for job in list(self.jobs.values()):
                    job.cancel(shutdown=True)
                await asyncio.to_thread(self._join_jobs, 15.0)
                await asyncio.to_thread(self.spool.clear)
                return True  # reconnect at once with the new identity
            if isinstance(reply, Rejected):
                raise AgentRejected(reply.reason)
            if not isinstance(reply, Welcome):
                raise ProtocolError(f"expected welcome, got {type(reply).__name__}")
            self.sessions += 1
            self.connected.set()
            try:
                await self._serve(ws, reply.flow_batches)
            finally:
                self.connected.clear()
            return True

    async def _serve(self, ws: ClientConnection, batches: bool = False) -> None:
        sender = asyncio.ensure_future(self._send_loop(ws, batches))
        try:
            async for frame in ws:
                await self._handle(ws, decode_from_server(frame))
        finally:
            sender.cancel()
            for task in self._upload_tasks.values():
                task.cancel()
            self._upload_tasks.clear()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _handle(self, ws: ClientConnection, message: object) -> None:
        if isinstance(message, Ack):
            await asyncio.to_thread(self.spool.ack, message.flow_id, message.seq)
        elif isinstance(message, CollectionRequest):
            self._start_job(message)
        elif isinstance(message, EventAssignments):
            await asyncio.to_thread(self._apply_events, message, True)
        elif isinstance(message, CancelCollection):
            job = self.jobs.get(message.flow_id)
            if job is not None:
                job.cancel()
        elif isinstance(message, UploadResume):
            self._resume_upload(ws, message)
        elif isinstance(message, StorageUnavailable):
            log.warning(
                "server storage unavailable; holding results for %.0fs", message.retry_after
            )
            self._paused_until = time.monotonic() + message.retry_after
            self._resend = True
            self._wake.set()
        else:
            raise ProtocolError(f"unexpected {type(message).__name__} after the handshake")

    def _start_job(self, request: CollectionRequest) -> None:
        if request.hunt_id:
            self.spool.saw_hunt(request.hunt_id, time.time())
        flow_id = request.flow_id

        def started(seq: int) -> bytes:
            return encode(FlowStarted(flow_id=flow_id, seq=seq, started=time.time()))

        # The flow and its start in one commit: the query starts one fsync sooner.
        stored_start = time.monotonic()
        if not self.spool.start_flow(flow_id, encode(request), started):
            return  # delivered twice (e.g. after a reconnect): it already ran or is running
        self.wake()  # the sender holds a lone start (outbox.py) until the rest comes
        # Imported on the first collection: the artifact and engine layers are not needed by
        # an agent that is only connected and waiting.
        from peregrine.agent.collection import CollectionJob

        job = CollectionJob(
            request,
            self.spool,
            self.work_dir,
            wake_sender=self.wake,
            uploads_settled=lambda flow: not self.spool.incomplete_uploads(flow),
            workers=self.spares(),
            stored_start=stored_start,
        )
        self.jobs[request.flow_id] = job

        def run() -> None:
            set_log_context(flow_id=request.flow_id, hunt_id=request.hunt_id or None)
            try:
                job.run()
            finally:
                self.jobs.pop(request.flow_id, None)
                self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"flow-{request.flow_id}", daemon=True)
        self._threads.add(thread)
        thread.start()

    # -- event monitoring (agent/events.py) -----------------------------------------------------

    def _apply_events(self, message: EventAssignments, keep: bool) -> None:
        """Run the assigned event artifacts; ``keep``: remember the set for the next start."""
        if self.events is None:
            if not message.artifacts:
                return  # nothing to watch: the engine layers stay unloaded
            from peregrine.agent.events import EventRunner

            self.events = EventRunner(self.spool, self.wake, self._event_status, self.spares())
        # Applied even at the same version: a label change gives a client another set.
        self.events.apply(message)
        if keep:
            tmp = self._assignments_path.with_suffix(".tmp")
            tmp.write_bytes(encode(message))
            tmp.replace(self._assignments_path)

    def _resume_events(self) -> None:
        """Start the event artifacts of the last set at once: events that happen before the
        server answers are watched and spooled too."""
        try:
            message = decode_from_server(self._assignments_path.read_bytes())
        except (FileNotFoundError, ProtocolError):
            return
        if isinstance(message, EventAssignments):
            self._apply_events(message, False)

    def _event_status(self, status: EventStatus) -> None:
        """From the event workers' threads: keep the status, have the sender send it."""
        with self._statuses_lock:
            self.event_statuses[status.artifact] = status
        self.wake()

    async def _send_statuses(self, ws: ClientConnection, sent: dict[str, EventStatus]) -> None:
        with self._statuses_lock:
            changed = [s for name, s in self.event_statuses.items() if sent.get(name) != s]
        for status in changed:
            await ws.send(encode(status))
            sent[status.artifact] = status

    def wake(self) -> None:
        """Tell the sender there is something new in the spool (safe from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _send_loop(self, ws: ClientConnection, batches: bool = False) -> None:
        """Send every spooled message once per connection, in order (packed in ``FlowBatch``
        frames if the server takes them: ``outbox.py``); re-announce uploads."""
        outbox = Outbox(batches)
        statuses: dict[str, EventStatus] = {}
        # Bookkeeping of finished, fully acknowledged flows is no longer needed: keep the
        # spool from growing with every collection the agent ever ran.
        await asyncio.to_thread(self.spool.forget_done_flows)
        for upload in await asyncio.to_thread(self.spool.incomplete_uploads):
            await ws.send(upload.announce)
        while True:
            self._wake.clear()
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._resend:
                self._resend = False
                outbox.resend_all()  # the server dropped what it could not store
            pending = await asyncio.to_thread(lambda: list(self.spool.pending()))
            frames, count, held = outbox.take(pending, time.monotonic())
            for frame in frames:
                await ws.send(frame)
            STATS.sent(count)
            await self._send_statuses(ws, statuses)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(5.0, held or 5.0))

    # -- uploads ------------------------------------------------------------------------------

    def _resume_upload(self, ws: ClientConnection, message: UploadResume) -> None:
        running = self._upload_tasks.pop(message.upload_id, None)
        if running is not None:
            running.cancel()
        self._upload_tasks[message.upload_id] = asyncio.ensure_future(
            self._stream_upload(ws, message)
        )

    async def _stream_upload(self, ws: ClientConnection, message: UploadResume) -> None:
        uploads = {u.upload_id: u for u in await asyncio.to_thread(self.spool.incomplete_uploads)}
        upload = uploads.get(message.upload_id)
        if upload is None:
            return  # finished earlier; the server is repeating itself
        if message.refused:
            log.warning("the server refused upload %s: %s", upload.local_path, message.refused)
        if message.offset >= upload.size:
            await asyncio.to_thread(self._upload_finished, message.upload_id)
            return
        offset = message.offset
        with open(upload.local_path, "rb") as source:
            source.seek(offset)
            while True:
                data = await asyncio.to_thread(source.read, UPLOAD_CHUNK_BYTES)
                last = offset + len(data) >= upload.size or not data
                await ws.send(
                    encode(
                        UploadChunk(
                            flow_id=upload.flow_id,
                            upload_id=upload.upload_id,
                            offset=offset,
                            data=data,
                            last=last,
                        )
                    )
                )
                offset += len(data)
                if last:
                    return

    def _upload_finished(self, upload_id: str) -> None:
        upload = self.spool.upload_done(upload_id)
        if upload is not None:
            Path(upload.local_path).unlink(missing_ok=True)
