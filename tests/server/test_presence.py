"""Presence: on one host, online/offline changes go to the other processes in batches, the
latest state winning; in a cluster, each frontend's clients live in Redis only while it keeps
refreshing them (a real redis-server)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as redis

from peregrine.server.presence import IDS_PER_NOTICE, PresenceAnnouncer
from peregrine.server.presence_redis import RedisPresence
from tests.conftest import RedisServer
from tests.server.harness import wait_until


def test_changes_are_batched_and_the_latest_state_wins() -> None:
    sent: list[dict[str, Any]] = []

    async def publish(notice: dict[str, Any]) -> None:
        sent.append(notice)

    async def scenario() -> None:
        presence = PresenceAnnouncer(publish, interval=0.05)
        for n in range(IDS_PER_NOTICE + 10):
            presence.online(f"C.{n:016x}")
        presence.offline("C.0000000000000001")  # came and went: only "offline" is told
        presence.offline("C.ffffffffffffffff")
        await asyncio.sleep(0.01)
        assert sent == []  # nothing before the batch interval
        await asyncio.sleep(0.2)
        assert [n["kind"] for n in sent] == ["online", "online", "offline"]
        online = sent[0]["clients"] + sent[1]["clients"]
        assert len(sent[0]["clients"]) == IDS_PER_NOTICE
        assert len(online) == IDS_PER_NOTICE + 9
        assert "C.0000000000000001" not in online
        assert sent[2]["clients"] == ["C.0000000000000001", "C.ffffffffffffffff"]
        sent.clear()
        presence.online("C.0000000000000002")
        await presence.close()  # sends what is left at once
        assert sent == [{"kind": "online", "clients": ["C.0000000000000002"]}]

    asyncio.run(scenario())


# -- presence in Redis (a cluster) ------------------------------------------------------------

NAMESPACE = "peregrine:test"


class Frontend:
    """One frontend's presence, holding ``clients``, with the short timings of a test."""

    def __init__(self, url: str, name: str, ttl: float = 1.0, **options: Any) -> None:
        self.clients: list[str] = []
        self.appeared: list[str] = []
        self.presence = RedisPresence(
            redis.Redis.from_url(url), NAMESPACE, name, interval=0.1, ttl=ttl, **options
        )
        #: The keys whose whole set this frontend read (SMEMBERS), in order.
        self.whole_reads: list[str] = []
        smembers = self.presence.redis.smembers

        async def counted(key: str) -> Any:
            self.whole_reads.append(key if isinstance(key, str) else key.decode())
            return await smembers(key)

        self.presence.redis.smembers = counted  # type: ignore[method-assign]

    def whole_reads_of(self, name: str) -> int:
        return sum(1 for key in self.whole_reads if key.endswith(f":clients:{name}"))

    async def start(self) -> None:
        async def appeared(clients: list[str]) -> None:
            self.appeared.extend(clients)

        await self.presence.start(lambda: list(self.clients), appeared)

    def connect(self, client_id: str) -> None:
        self.clients.append(client_id)
        self.presence.online(client_id)

    def disconnect(self, client_id: str) -> None:
        self.clients.remove(client_id)
        self.presence.offline(client_id)

    def sees(self) -> set[str]:
        return set().union(*self.presence.remote())

    async def close(self) -> None:
        await self.presence.close()
        await self.presence.redis.aclose()


def test_redis_presence_shares_who_holds_which_client(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a, b = Frontend(redis_server.url, "a"), Frontend(redis_server.url, "b")
        a.connect("C.0000000000000001")  # held before it started: written whole at start
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000001"}, 5)
            a.connect("C.0000000000000002")
            b.connect("C.0000000000000003")
            await wait_until(lambda: len(b.sees()) == 2 and len(a.sees()) == 1, 5)
            assert b.presence.holder("C.0000000000000002") == "a"
            assert a.presence.holder("C.0000000000000003") == "b"
            assert a.presence.holder("C.0000000000000001") is None  # its own, not another's
            assert sorted(b.appeared) == ["C.0000000000000001", "C.0000000000000002"]
            a.disconnect("C.0000000000000001")
            await wait_until(lambda: b.sees() == {"C.0000000000000002"}, 5)
        finally:
            await a.close()
        # A graceful stop takes its entry out at once, not after the time-to-live.
        await wait_until(lambda: b.sees() == set(), 1.0)
        await b.close()

    asyncio.run(scenario())


def test_a_frontend_that_stops_refreshing_drops_out_within_its_ttl(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        a, b = Frontend(redis_server.url, "a", ttl=1.0), Frontend(redis_server.url, "b")
        a.connect("C.0000000000000001")
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000001"}, 5)
            assert a.presence._task is not None
            a.presence._task.cancel()  # as if its process died: no goodbye, no refresh
            gone = time.monotonic()
            await wait_until(lambda: b.sees() == set(), 5, interval=0.02)
            assert 0.5 < time.monotonic() - gone < 1.0 + 0.5
        finally:
            await a.presence.redis.aclose()
            await b.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_redis_presence_is_written_again_after_redis_restarts(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        a, b = Frontend(redis_server.url, "a"), Frontend(redis_server.url, "b")
        a.connect("C.0000000000000001")
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000001"}, 5)
            await asyncio.to_thread(redis_server.stop)
            await wait_until(lambda: a.presence.degraded_reason is not None, 5)
            a.connect("C.0000000000000002")  # while Redis is away
            await asyncio.to_thread(redis_server.start)  # empty: --save ''
            await wait_until(lambda: b.sees() == {"C.0000000000000001", "C.0000000000000002"}, 10)
            await wait_until(lambda: a.presence.degraded_reason is None, 5)
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_other_frontends_changes_are_read_as_changes_not_whole_lists(
    redis_server: RedisServer,
) -> None:
    """Every second a frontend's list changed, each other frontend read it whole: under churn,
    (frontends - 1) x (clients each) ids a second per frontend. Now only the changes travel."""

    async def scenario() -> None:
        a, b = Frontend(redis_server.url, "a"), Frontend(redis_server.url, "b")
        a.connect("C.0000000000000000")
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000000"}, 5)
            assert b.whole_reads_of("a") == 1  # once, when it first heard of a
            for n in range(1, 21):
                a.connect(f"C.{2 * n:016x}")
                a.connect(f"C.{2 * n + 1:016x}")
                a.disconnect(f"C.{2 * n - 2:016x}")
                await wait_until(lambda: b.sees() == set(a.clients), 5, interval=0.02)
            assert b.whole_reads_of("a") == 1
            assert sorted(set(b.appeared)) == sorted({f"C.{n:016x}" for n in range(42) if n != 1})
            assert b.presence.holder("C.0000000000000029") == "a"
            assert b.presence.holder("C.0000000000000000") is None  # gone long ago
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_a_frontend_too_far_behind_or_a_restarted_one_is_read_whole(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        a = Frontend(redis_server.url, "a", changes_kept=3)
        b = Frontend(redis_server.url, "b")
        a.connect("C.0000000000000000")
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000000"}, 5)
            assert b.presence._task is not None
            b.presence._task.cancel()  # b stops looking while a changes 6 times
            for n in range(1, 7):
                a.connect(f"C.{n:016x}")
                await a.presence.sync()
            await b.presence.sync()  # a kept only its last 3 changes: b reads it whole
            assert b.sees() == set(a.clients)
            assert b.whole_reads_of("a") == 2
            a.connect("C.0000000000000007")
            await a.presence.sync()
            await b.presence.sync()  # one behind: a change
            assert b.sees() == set(a.clients)
            assert b.whole_reads_of("a") == 2
            # a restarts (a new boot, its whole list written again): read whole.
            await a.close()
            a = Frontend(redis_server.url, "a")
            a.connect("C.0000000000000008")
            await a.start()
            await b.presence.sync()
            assert b.sees() == {"C.0000000000000008"}
            assert b.whole_reads_of("a") == 3
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_a_reader_that_looked_before_the_latest_writes_still_catches_up_from_changes(
    redis_server: RedisServer,
) -> None:
    """Between reading a frontend's version and its changes, that frontend may write again:
    the changes before the last ``version - known`` are fetched too, not the whole list."""

    async def scenario() -> None:
        a, b = Frontend(redis_server.url, "a"), Frontend(redis_server.url, "b")
        a.connect("C.0000000000000000")
        await a.start()
        await b.start()
        try:
            await wait_until(lambda: b.sees() == {"C.0000000000000000"}, 5)
            assert b.presence._task is not None
            b.presence._task.cancel()
            assert a.presence._task is not None
            a.presence._task.cancel()  # only the syncs below write
            _, known, held = b.presence._cache["a"]
            for n in range(1, 4):
                a.connect(f"C.{n:016x}")
                await a.presence.sync()
            appeared: set[str] = set()
            # b read version known + 1; versions known + 2 and + 3 were written since.
            reached = await b.presence._catch_up("a", known, known + 1, held, appeared)
            assert reached == known + 3
            assert held == set(a.clients)
            assert appeared == {f"C.{n:016x}" for n in range(1, 4)}
            assert b.whole_reads_of("a") == 1
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
