"""The leader of a cluster: a PostgreSQL advisory lock on a connection of its own.

Against a real PostgreSQL: one leader at a time, another takes over within 10 s when the
leader's session is killed (``pg_terminate_backend``) or it stops, and deployments sharing a
database (one schema each) do not share a leader. The ``kill -9`` of a whole frontend is in
``test_bus_cluster.py``.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from sqlalchemy import make_url

from peregrine.server.leader import AdvisoryLeader
from tests.server.harness import wait_until

TAKEOVER_SECONDS = 10.0


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate(url: str, name: str) -> int:
    """Kill the PostgreSQL session of the leader connection called ``name``."""
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (f"peregrine leader {name}",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _watch(leaders: dict[str, AdvisoryLeader], seen: list[set[str]]) -> None:
    """Record who leads, every 10 ms."""
    while True:
        seen.append({name for name, leader in leaders.items() if leader.is_leader})
        await asyncio.sleep(0.01)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_another_frontend_takes_over_when_the_leaders_session_is_killed(
    postgres_database: str,
) -> None:
    async def scenario() -> float:
        leaders = {name: AdvisoryLeader(postgres_database, name) for name in ("a", "b", "c")}
        seen: list[set[str]] = []
        for leader in leaders.values():
            await leader.start()
        watcher = asyncio.create_task(_watch(leaders, seen))
        try:
            await wait_until(lambda: seen and len(seen[-1]) == 1, 10)
            await asyncio.sleep(2)  # the others keep trying and keep failing
            (first,) = seen[-1]
            assert _terminate(postgres_database, first) == 1
            killed = time.monotonic()
            await wait_until(lambda: len(seen[-1]) == 1 and first not in seen[-1], 10)
            takeover = time.monotonic() - killed
            # The killed one is not leader again until it has the lock again: if it does, fine,
            # as long as there is only ever one.
            await asyncio.sleep(2)
            return takeover
        finally:
            watcher.cancel()
            for leader in leaders.values():
                await leader.close()
            assert all(len(leading) <= 1 for leading in seen), "two leaders at once"

    takeover = asyncio.run(scenario())
    assert takeover < TAKEOVER_SECONDS


@pytest.mark.timeout(60)
def test_a_leader_that_stops_hands_over_and_reports_an_unreachable_database(
    postgres_database: str,
) -> None:
    async def scenario() -> None:
        a = AdvisoryLeader(postgres_database, "a")
        await a.start()
        await wait_until(lambda: a.is_leader, 10)
        b = AdvisoryLeader(postgres_database, "b")
        await b.start()
        await asyncio.sleep(2)
        assert a.is_leader and not b.is_leader and b.try_acquire() is False
        await a.close()
        assert not a.is_leader
        await wait_until(lambda: b.is_leader, TAKEOVER_SECONDS)
        await b.close()

        url = make_url(postgres_database).set(port=1).render_as_string(hide_password=False)
        nowhere = AdvisoryLeader(url, "nowhere")
        await nowhere.start()
        await wait_until(lambda: nowhere.degraded_reason is not None, 10)
        assert "PostgreSQL" in nowhere.degraded_reason and not nowhere.is_leader
        await nowhere.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_deployments_in_separate_schemas_of_one_database_each_have_a_leader(
    postgres_database: str,
) -> None:
    with psycopg.connect(_libpq(postgres_database), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA one")
        conn.execute("CREATE SCHEMA two")

    def in_schema(schema: str) -> str:
        url = make_url(postgres_database).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    async def scenario() -> None:
        one, two = AdvisoryLeader(in_schema("one"), "a"), AdvisoryLeader(in_schema("two"), "b")
        await one.start()
        await two.start()
        try:
            await wait_until(lambda: one.is_leader and two.is_leader, 10)
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())
