"""The Redis bus: notices between frontends (to all, or to one), and recovery by itself when
Redis restarts, with the degraded state visible meanwhile. Against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as redis

from peregrine.server.bus_redis import RedisBus
from tests.conftest import RedisServer
from tests.server.harness import wait_until

NAMESPACE = "peregrine:test"


class Inbox:
    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []

    async def __call__(self, notice: dict[str, Any]) -> None:
        self.notices.append(notice)

    def kinds(self) -> list[str]:
        return [n["kind"] for n in self.notices]


def test_broadcast_reaches_the_others_and_addressed_notices_only_their_frontend(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        buses = {name: RedisBus(redis_server.url, NAMESPACE, name) for name in "abc"}
        inboxes = {name: Inbox() for name in buses}
        for name, bus in buses.items():
            await bus.start(inboxes[name])
        try:
            assert all(bus.healthy for bus in buses.values())
            await buses["a"].publish({"kind": "hunt_started", "hunt_id": "H.1"})
            await buses["a"].publish({"kind": "deliver", "client_id": "C.1"}, to="c")
            await wait_until(lambda: inboxes["c"].kinds() == ["hunt_started", "deliver"], 5)
            await wait_until(lambda: inboxes["b"].kinds() == ["hunt_started"], 5)
            await asyncio.sleep(0.2)  # anything else would have come by now
            assert inboxes["b"].kinds() == ["hunt_started"]  # not the one addressed to c
            assert inboxes["a"].notices == []  # its own broadcast is not handed back
            assert inboxes["c"].notices[1] == {"kind": "deliver", "client_id": "C.1", "from": "a"}
        finally:
            for bus in buses.values():
                await bus.close()

    asyncio.run(scenario())


def test_another_deployment_on_the_same_redis_hears_nothing(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        ours, theirs = RedisBus(redis_server.url, NAMESPACE, "a"), Inbox()
        other = RedisBus(redis_server.url, "peregrine:other", "b")
        await ours.start(Inbox())
        await other.start(theirs)
        try:
            await ours.publish({"kind": "hunt_started", "hunt_id": "H.1"})
            await ours.publish({"kind": "deliver", "client_id": "C.1"}, to="b")
            await asyncio.sleep(0.5)
            assert theirs.notices == []
        finally:
            await ours.close()
            await other.close()

    asyncio.run(scenario())


def test_malformed_notices_are_ignored(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        bus, inbox = RedisBus(redis_server.url, NAMESPACE, "a"), Inbox()
        await bus.start(inbox)
        raw = redis.Redis.from_url(redis_server.url)
        try:
            await raw.publish(bus.broadcast, b"\xff not json")
            await raw.publish(bus.broadcast, b"[1, 2]")
            await raw.publish(bus.broadcast, b'{"kind": "hunt_stopped", "hunt_id": "H.1"}')
            await wait_until(lambda: inbox.kinds() == ["hunt_stopped"], 5)
        finally:
            await raw.aclose()
            await bus.close()

    asyncio.run(scenario())
    assert "bus: ignoring a malformed notice" in caplog.text


def test_a_notice_too_large_is_refused_before_it_is_sent(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        bus = RedisBus(redis_server.url, NAMESPACE, "a")
        await bus.start(Inbox())
        try:
            with pytest.raises(ValueError, match="too large"):
                await bus.publish({"kind": "online", "clients": ["C.0123456789abcdef"] * 5000})
        finally:
            await bus.close()

    asyncio.run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_the_bus_recovers_by_itself_when_redis_restarts(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        a = RedisBus(redis_server.url, NAMESPACE, "a")
        b = RedisBus(redis_server.url, NAMESPACE, "b")
        inbox = Inbox()
        await a.start(Inbox())
        await b.start(inbox)
        try:
            await a.publish({"kind": "hunt_started", "hunt_id": "H.before"})
            await wait_until(lambda: inbox.kinds() == ["hunt_started"], 5)

            await asyncio.to_thread(redis_server.stop)
            await wait_until(lambda: not b.healthy, 10)
            assert b.degraded_reason is not None and "Redis" in b.degraded_reason
            started = time.monotonic()
            await a.publish({"kind": "hunt_started", "hunt_id": "H.lost"})  # dropped, not stuck
            cancel = {"kind": "send", "client_id": "C.1", "payload": "00"}
            await a.publish(cancel, to="b")  # dropped too, but kept
            assert time.monotonic() - started < 3
            assert not a.healthy

            await asyncio.to_thread(redis_server.start)
            await wait_until(lambda: a.healthy and b.healthy, 20)
            # Each hands itself a resync (what it missed is read again from the datastore)
            # and tells the others, whose link may not have been the one cut.
            await wait_until(lambda: "resync" in inbox.kinds(), 10)
            assert {n["from"] for n in inbox.notices if n["kind"] == "resync"} <= {"a", "b"}
            # A cancel cannot be read again from the datastore: the dropped one is sent again.
            await wait_until(lambda: "send" in inbox.kinds(), 10)
            assert [n for n in inbox.notices if n["kind"] == "send"] == [{**cancel, "from": "a"}]

            async def heard() -> bool:
                await a.publish({"kind": "hunt_stopped", "hunt_id": "H.after"})
                return "hunt_stopped" in inbox.kinds()

            await wait_until(heard, 10, interval=0.3)
            assert "H.lost" not in [n.get("hunt_id") for n in inbox.notices]
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("bus_redis")]
    # Logged once when it went down and once when it came back, not once per retry.
    assert sum("dropped until it is back" in w for w in warnings) <= 2, warnings
    assert any("connected again" in w for w in warnings)
