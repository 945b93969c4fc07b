"""The bus between frontends on several hosts: Redis publish/subscribe.

Imported only when ``bus_url`` names Redis (the embedded mode never loads the client). Every
frontend of a deployment listens on two channels under the deployment's namespace: ``bus``
(notices for everyone) and ``bus:<name>`` (notices addressed to it, such as "deliver the
pending tasks of a client you hold"). Notices are best-effort, as on the other buses: the
datastore is the truth, a lost notice only delays work.

Redis going away is expected (a restart, a fail-over): the listener reconnects by itself with
backoff, publishing drops notices while Redis is unreachable instead of holding up its caller,
and ``healthy``/``degraded_reason`` say so, once in the log and in the server's status. When
it is back, the bus hands its own handler a ``resync`` notice and sends one to every frontend
(whose link to Redis may have stayed up while ours was cut): each then reads again from the
datastore what the dropped notices were about (``resync.py``). A cancel (a ``send`` notice)
cannot be read again from the datastore, since it is for a collection already running on the
agent: the last ``UNSENT_KEPT`` dropped ones are kept and sent again (cancelling twice, or
a collection the agent no longer runs, does nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as LostConnection
from redis.exceptions import RedisError

from peregrine.config.model import hide_password
from peregrine.datastore import DatastoreUnavailable
from peregrine.metrics.instruments import BUS_PUBLISH_SECONDS
from peregrine.server.bus import MAX_NOTICE_BYTES, RESYNC, Handler

log = logging.getLogger(__name__)
BUS_PUBLISH_REDIS = BUS_PUBLISH_SECONDS.labels(bus="redis")

#: Seconds a Redis connection may take to open, and a command to answer.
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
#: The listener's reconnection backoff (doubling, capped).
RETRY_FIRST = 0.1
RETRY_MAX = 2.0
#: After a failed publish, later ones are dropped at once for this long (no stall per notice).
PUBLISH_PAUSE = 1.0
#: How long ``start`` waits for the first subscription before going on degraded.
START_WAIT = 3.0
#: Dropped cancels kept to send again once Redis is back (about 200 bytes each).
UNSENT_KEPT = 10_000


def connect(url: str) -> redis.Redis:
    """A Redis client with the time-outs a frontend needs (never wait long on a dead server)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=5,
        retry_on_timeout=False,
        decode_responses=False,
    )


class RedisBus:
    """Frontends of one deployment on any number of hosts, over one Redis server."""

    shared = True

    def __init__(self, url: str, namespace: str, name: str, workers: int = 1) -> None:
        self.url = url
        self.name = name
        self.workers = workers
        self.broadcast = f"{namespace}:bus"
        self.namespace = namespace
        self.redis = connect(url)
        self._listening = False
        self._listener_error: str | None = "not connected yet"
        self._publish_error: str | None = None
        self._publish_failed_at = float("-inf")
        self._was_healthy = True  # what the log last said
        self._subscribed = asyncio.Event()
        self._handler: Handler | None = None
        self._unsent: deque[dict[str, Any]] = deque(maxlen=UNSENT_KEPT)
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def channel(self, name: str) -> str:
        """The channel of the frontend called ``name``."""
        return f"{self.namespace}:bus:{name}"

    @property
    def healthy(self) -> bool:
        return self.degraded_reason is None

    @property
    def degraded_reason(self) -> str | None:
        if not self._listening:
            return f"bus (Redis {hide_password(self.url)}): {self._listener_error}"
        if time.monotonic() - self._publish_failed_at < PUBLISH_PAUSE * 5:
            return f"bus (Redis {hide_password(self.url)}): {self._publish_error}"
        return None

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._listen(handler))
        # Usually subscribed within milliseconds; if Redis is down the frontend still starts
        # (agents and the API work; notices wait for Redis to come back).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), START_WAIT)

    async def _listen(self, handler: Handler) -> None:
        delay = RETRY_FIRST
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.broadcast, self.channel(self.name))
                self._listening, self._listener_error = True, None
                self._subscribed.set()
                self._report()
                delay = RETRY_FIRST
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(handler, message.get("data"))
                    self._report()  # a publishing failure has aged out: say so within 1 s
            except (RedisError, OSError) as exc:
                self._listening, self._listener_error = False, _describe(exc)
                self._report()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _dispatch(self, handler: Handler, data: Any) -> None:
        try:
            notice = json.loads(data)
        except (ValueError, TypeError):
            log.warning("bus: ignoring a malformed notice")
            return
        if not isinstance(notice, dict) or notice.get("from") == self.name:
            return  # our own broadcast comes back to us
        self._spawn(self._handle(handler, notice))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    @staticmethod
    async def _handle(handler: Handler, notice: dict[str, Any]) -> None:
        try:
            await handler(notice)
        except DatastoreUnavailable:
            # PostgreSQL away too: what the notice was about is read again from it once it
            # answers (the resync retries, and says so once).
            if notice.get("kind") != RESYNC:
                await RedisBus._handle(handler, {"kind": RESYNC})
        except Exception:
            log.exception("bus: handling %s failed", notice.get("kind"))

    async def publish(self, notice: dict[str, Any], to: str | None = None) -> None:
        data = json.dumps({**notice, "from": self.name}).encode()
        if len(data) > MAX_NOTICE_BYTES:
            raise ValueError(f"a bus notice of {len(data)} bytes is too large")
        if time.monotonic() - self._publish_failed_at < PUBLISH_PAUSE:
            self._drop(notice)
            return
        try:
            await self._send(self.broadcast if to is None else self.channel(to), data)
        except (RedisError, OSError) as exc:
            self._drop(notice)
            self._publish_error = _describe(exc)
            self._publish_failed_at = time.monotonic()
        self._report()

    async def _send(self, channel: str, data: bytes) -> None:
        """Publish; once more on a lost connection while the listener is connected: after a
        Redis restart the pool's first connection is a dead one (the resync would be lost)."""
        try:
            with BUS_PUBLISH_REDIS.time():
                await self.redis.publish(channel, data)
        except LostConnection:
            if not self._listening:
                raise
            with BUS_PUBLISH_REDIS.time():
                await self.redis.publish(channel, data)

    def _drop(self, notice: dict[str, Any]) -> None:
        self.dropped += 1
        if notice.get("kind") == "send":  # a cancel: nothing else can bring it back
            self._unsent.append(notice)

    def _report(self) -> None:
        """Log a change of health once (not once per notice)."""
        reason = self.degraded_reason
        if reason is not None and self._was_healthy:
            log.warning(
                "%s; agents are still served (degraded); notices between frontends are "
                "dropped until it is back, then their work is read from the datastore",
                reason,
            )
        elif reason is None and not self._was_healthy:
            log.warning("bus (Redis): connected again (%d notice(s) dropped)", self.dropped)
            self.dropped = 0
            self._spawn(self._resync())
        self._was_healthy = reason is None

    async def _resync(self) -> None:
        """Back after an outage: this frontend and every other re-read pending work."""
        notice = {"kind": RESYNC}
        await self.publish(notice)
        while self._unsent and self.healthy:
            # To everyone: the client may have moved since; the others ignore it.
            await self.publish(self._unsent.popleft())
        if self._handler is not None:
            await self._handle(self._handler, {**notice, "from": self.name})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._handlers):
            task.cancel()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
