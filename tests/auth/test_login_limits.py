"""Failed-login counting (per address, per user name) and the password threads' bound."""

from __future__ import annotations

import asyncio
import threading

import pytest

from peregrine.auth.login_limits import FailedLogins, address_key, user_key
from peregrine.auth.password_pool import PasswordPool, PoolBusy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock, **kw: int) -> FailedLogins:
    return FailedLogins(
        kw.get("per_address", 5), kw.get("per_user", 3), 60.0, clock=clock,
        max_keys=kw.get("max_keys", 1000),
    )  # fmt: skip


def test_a_user_name_is_blocked_after_its_limit_until_the_window_moves_on() -> None:
    clock = Clock()
    failed = limits(clock)
    for i in range(3):
        assert failed.check(f"10.0.0.{i}", "Alice") is None  # from several addresses
        failed.failed(f"10.0.0.{i}", "alice")
        clock.now += 10
    throttled = failed.check("10.9.9.9", " ALICE ")
    assert throttled is not None
    assert "for alice" in throttled.reason
    assert throttled.retry_after == 30  # the first failure (30 s ago) leaves the window at 60 s
    assert failed.check("10.9.9.9", "bob") is None
    clock.now += 29
    assert failed.check("10.9.9.9", "alice") is not None
    clock.now += 1
    assert failed.check("10.9.9.9", "alice") is None


def test_an_address_is_blocked_whatever_names_it_tries() -> None:
    clock = Clock()
    failed = limits(clock)
    for i in range(5):
        failed.failed("192.0.2.7", f"user{i}")
    throttled = failed.check("192.0.2.7", "someone-else")
    assert throttled is not None and "from 192.0.2.7" in throttled.reason
    assert failed.check("192.0.2.8", "someone-else") is None


def test_success_clears_the_user_name_not_the_address() -> None:
    clock = Clock()
    failed = limits(clock, per_address=4, per_user=3)
    for _ in range(2):
        failed.failed("192.0.2.7", "alice")
    failed.succeeded("alice")
    failed.failed("192.0.2.7", "alice")
    assert failed.check("198.51.100.1", "alice") is None  # one failure since the success
    failed.failed("192.0.2.7", "mallory")
    assert failed.check("192.0.2.7", "alice") is not None  # the address still counts four


def test_ipv6_addresses_count_by_their_64_prefix() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1")
    assert address_key(None) == address_key("")
    assert user_key(" Alice ") == user_key("alice")


def test_memory_is_bounded_and_old_failures_are_forgotten() -> None:
    clock = Clock()
    failed = limits(clock, max_keys=50)
    for i in range(500):
        failed.failed(f"10.0.{i // 250}.{i % 250}", f"name{i}")
    assert len(failed._failures) <= 50
    clock.now += 61
    failed.failed("10.1.1.1", "late")
    assert len(failed._failures) == 2  # only the new failure's address and name


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FailedLogins(0, 1, 1.0)


def test_the_password_pool_refuses_past_its_queue_at_once() -> None:
    pool = PasswordPool(workers=1, max_waiting=1)
    release = threading.Event()
    threads: list[str] = []

    def job(n: int) -> int:
        threads.append(threading.current_thread().name)
        release.wait(10)
        return n

    async def main() -> list[int]:
        first = asyncio.create_task(pool.run(job, 1))
        second = asyncio.create_task(pool.run(job, 2))
        await asyncio.sleep(0.05)
        assert pool.admitted == 2
        with pytest.raises(PoolBusy) as busy:
            await pool.run(job, 3)
        assert busy.value.retry_after >= 1
        release.set()
        return [await first, await second]

    try:
        assert asyncio.run(main()) == [1, 2]
        assert pool.admitted == 0
        assert threads and all(name.startswith("peregrine-passwords") for name in threads)
    finally:
        pool.close()


def test_a_caller_that_stops_waiting_still_holds_its_place_until_the_job_ends() -> None:
    pool = PasswordPool(workers=1, max_waiting=0)
    release = threading.Event()

    async def main() -> None:
        waiting = asyncio.create_task(pool.run(release.wait, 10))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.sleep(0.05)
        # The thread is still busy: a new job would only queue behind it.
        with pytest.raises(PoolBusy):
            await pool.run(release.wait, 10)
        release.set()
        await asyncio.sleep(0.1)
        assert pool.admitted == 0

    try:
        asyncio.run(main())
    finally:
        pool.close()
