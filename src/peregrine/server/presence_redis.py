"""Presence in Redis: which clients each frontend of a cluster holds, gone when it dies.

Keys under the deployment's namespace:

* ``frontends``: the set of frontend names that have announced themselves;
* ``alive:<name>``: ``<boot>:<version>``, set with a time-to-live of ``ttl`` seconds and
  refreshed every ``interval`` — a frontend that dies (``kill -9``, a host lost) stops
  refreshing, and its entry is gone ``ttl`` seconds later;
* ``clients:<name>``: the set of client ids it holds, with the same time-to-live;
* ``changes:<name>``: its last ``CHANGES_KEPT`` writes, one entry per version
  (``<version> +C.1 -C.2 ...``, or ``<version> *`` when it wrote its whole list), same
  time-to-live.

Each frontend writes its changes and refreshes its keys, then reads the others' into a local
cache that ``Server.online()`` reads without waiting. A frontend whose version moved on is
caught up from its ``changes`` (the entries after the version cached), and read whole only
when they do not reach back that far, it restarted, or it wrote its whole list: reading every
other frontend's whole list each second that it changed cost each frontend (frontends - 1) x
(clients each) ids a second under churn, which at a million endpoints would be the first
thing to saturate Redis. If its ``alive`` key had vanished (Redis restarted, or the frontend
was cut off long enough to expire), a frontend writes its whole list again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from peregrine.server.presence import PRESENCE_EXPIRY, Appeared, LocalClients

log = logging.getLogger(__name__)

#: Seconds between refreshes, and the time-to-live of a frontend's entry.
REFRESH_SECONDS = 1.0
TTL_SECONDS = 5.0
#: Client ids per SADD when a frontend writes its whole list.
WRITE_CHUNK = 5000
#: Writes kept in a frontend's ``changes`` list (a reader further behind reads the whole set).
CHANGES_KEPT = 64
#: Writes made since a reader read a version that it fetches rather than reading the whole list.
CHANGES_AHEAD = 8


class RedisPresence:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        name: str,
        interval: float = REFRESH_SECONDS,
        ttl: float = TTL_SECONDS,
        changes_kept: int = CHANGES_KEPT,
    ) -> None:
        self.redis = client
        self.name = name
        self.interval = interval
        self.ttl_ms = int(ttl * 1000)
        self.changes_kept = changes_kept
        self._frontends = f"{namespace}:frontends"
        self._prefix = namespace
        self._boot = os.urandom(6).hex()  # a restarted frontend of the same name is new
        self._version = 0
        self._changes: dict[str, bool] = {}
        self._rewrite = True
        #: Other frontends' clients: name -> (their boot, version, clients).
        self._cache: dict[str, tuple[str, int, set[str]]] = {}
        #: Other frontends' lists read whole (at start, after a restart or a gap).
        self.full_reads = 0
        self._read_at = float("-inf")
        self._local: LocalClients = list
        self._appeared: Appeared | None = None
        self._task: asyncio.Task[None] | None = None
        self.degraded_reason: str | None = None

    def _alive(self, name: str) -> str:
        return f"{self._prefix}:alive:{name}"

    def _clients(self, name: str) -> str:
        return f"{self._prefix}:clients:{name}"

    def _log(self, name: str) -> str:
        return f"{self._prefix}:changes:{name}"

    # -- this frontend --------------------------------------------------------------------------

    def online(self, client_id: str) -> None:
        self._changes[client_id] = True

    def offline(self, client_id: str) -> None:
        self._changes[client_id] = False

    # -- the others -----------------------------------------------------------------------------

    def remote(self) -> list[set[str]]:
        if time.monotonic() - self._read_at > PRESENCE_EXPIRY:
            return []  # Redis unreachable for a while: what we knew is too old to trust
        return [clients for _, _, clients in self._cache.values()]

    def holder(self, client_id: str) -> str | None:
        if time.monotonic() - self._read_at > PRESENCE_EXPIRY:
            return None
        return next((name for name, (_, _, c) in self._cache.items() if client_id in c), None)

    async def on_notice(self, notice: dict[str, Any]) -> None:
        return None  # nothing travels on the bus: Redis holds the lists

    # -- the loop -------------------------------------------------------------------------------

    async def start(self, local: LocalClients, appeared: Appeared) -> None:
        self._local, self._appeared = local, appeared
        with contextlib.suppress(RedisError, OSError):
            await self.sync()  # known at once when Redis is up; the loop retries otherwise
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync()
            except (RedisError, OSError) as exc:
                self._rewrite = True  # whatever Redis holds for us may be gone when it is back
                if self.degraded_reason is None:
                    log.warning("presence (Redis): %s; retrying every %g s", exc, self.interval)
                self.degraded_reason = f"presence (Redis): {type(exc).__name__}: {exc}"
            except Exception:
                log.exception("presence (Redis): refresh failed")
            else:
                if self.degraded_reason is not None:
                    log.warning("presence (Redis): connected again")
                self.degraded_reason = None

    async def sync(self) -> None:
        """Write this frontend's changes and refresh its keys, then read the others."""
        if not await self._write():
            self._rewrite = True  # our entry had expired or Redis restarted empty
            await self._write()
        await self._read()

    async def _write(self) -> bool:
        """One transaction; False when our ``alive`` key was missing before it (the list in
        Redis may be incomplete: the caller writes it whole)."""
        rewrite = self._rewrite
        changes, self._changes = self._changes, {}
        if changes or rewrite:
            self._version += 1
        clients, log = self._clients(self.name), self._log(self.name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._alive(self.name), f"{self._boot}:{self._version}", px=self.ttl_ms, get=True)
        if rewrite:
            pipe.delete(clients, log)
            held = self._local()
            for start in range(0, len(held), WRITE_CHUNK):
                pipe.sadd(clients, *held[start : start + WRITE_CHUNK])
            pipe.rpush(log, f"{self._version} *")
        elif changes:
            added = [client for client, now in changes.items() if now]
            removed = [client for client, now in changes.items() if not now]
            if added:
                pipe.sadd(clients, *added)
            if removed:
                pipe.srem(clients, *removed)
            entry = " ".join([str(self._version), *(f"+{c}" for c in added),
                              *(f"-{c}" for c in removed)])  # fmt: skip
            pipe.rpush(log, entry)
            pipe.ltrim(log, -self.changes_kept, -1)
        pipe.pexpire(clients, self.ttl_ms)
        pipe.pexpire(log, self.ttl_ms)
        pipe.sadd(self._frontends, self.name)
        try:
            results = await pipe.execute()
        except BaseException:
            self._changes = {**changes, **self._changes}  # tried again next time
            raise
        self._rewrite = False
        previous = results[0]
        return rewrite or previous is not None

    async def _read(self) -> None:
        names = sorted(_text(n) for n in await self.redis.smembers(self._frontends))
        others = [n for n in names if n != self.name]
        values = await self.redis.mget([self._alive(n) for n in others]) if others else []
        cache: dict[str, tuple[str, int, set[str]]] = {}
        appeared: set[str] = set()
        for name, value in zip(others, values, strict=True):
            if value is None:  # gone: its keys expired; forget the name too
                await self.redis.srem(self._frontends, name)
                continue
            boot, _, number = _text(value).rpartition(":")
            version = int(number)
            old = self._cache.get(name)
            if old is not None and old[0] == boot and old[1] >= version:
                cache[name] = old
                continue
            if old is not None and old[0] == boot:
                caught_up = await self._catch_up(name, old[1], version, old[2], appeared)
                if caught_up is not None:
                    cache[name] = (boot, caught_up, old[2])
                    continue
            members = await self.redis.smembers(self._clients(name))
            self.full_reads += 1
            held = {_text(m) for m in members}
            appeared |= held - (old[2] if old is not None else set())
            cache[name] = (boot, version, held)
        self._cache, self._read_at = cache, time.monotonic()
        if appeared and self._appeared is not None:
            await self._appeared(sorted(appeared))

    async def _catch_up(
        self, name: str, known: int, version: int, held: set[str], appeared: set[str]
    ) -> int | None:
        """Apply ``name``'s writes after version ``known`` to ``held`` (in place); the version
        reached, or None (nothing changed) when they do not reach back to ``known + 1`` or
        one of them rewrote the whole list: the caller reads it whole.

        Exactly the missed entries are read (the last ``version - known``); if the frontend
        wrote again since its version was read, the few before those are read next."""
        log, count = self._log(name), version - known
        entries = [_text(e).split(" ") for e in await self.redis.lrange(log, -count, -1)]
        if entries and entries[0][0].isdigit():
            newer = int(entries[0][0]) - known - 1
            if 0 < newer <= CHANGES_AHEAD:
                older = await self.redis.lrange(log, -(count + newer), -(count + 1))
                entries = [_text(e).split(" ") for e in older] + entries
        versions = [int(e[0]) if e[0].isdigit() else -1 for e in entries]
        if not entries or versions != list(range(known + 1, known + 1 + len(entries))):
            return None
        if any("*" in entry[1:] for entry in entries):
            return None
        for entry in entries:
            for change in entry[1:]:
                client = change[1:]
                if change[0] == "+":
                    if client not in held:
                        appeared.add(client)
                        held.add(client)
                else:
                    held.discard(client)
        return versions[-1]

    async def close(self) -> None:
        """Stop refreshing and take this frontend's entry out at once (a graceful stop)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(
                self._alive(self.name), self._clients(self.name), self._log(self.name)
            )
            await self.redis.srem(self._frontends, self.name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
