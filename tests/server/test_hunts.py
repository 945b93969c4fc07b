"""Hunts with real agents: matching, late check-ins, labels, hunt_add, stop, results, exports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from peregrine.server.app import Server
from peregrine.services.hunts import HuntError, HuntSpec
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    wait_until,
)

USERS = ("Linux.Sys.Users", {"UserRegex": "^root$"})


async def interrogated(server: Server, client_id: str) -> None:
    await wait_until(
        lambda: (c := server.datastore.clients.get(client_id)) and c.interrogated, timeout=30
    )
    await wait_until(lambda: server.hunts.index.clients.get(client_id), timeout=10)


async def hunt_done(server: Server, hunt_id: str, expected: int) -> None:
    def settled():  # type: ignore[no-untyped-def]
        stats = server.datastore.hunts.stats(hunt_id)
        return stats.scheduled == expected and stats.finished + stats.errors == expected

    await wait_until(settled, timeout=60)


@pytest.fixture
def deployment(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_deployment(tmp_path / "deploy")


def test_a_hunt_reaches_connected_and_later_clients_once(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    late_config = agent_config(deployment, tmp_path / "late")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            # The late client is enrolled once, then goes away before the hunt starts.
            async with running_agent(late_config) as late:
                late_id = late.client_id
                await interrogated(server, late_id)
            async with contextlib.AsyncExitStack() as stack:
                agents = [
                    await stack.enter_async_context(
                        running_agent(agent_config(deployment, tmp_path / f"h{i}"))
                    )
                    for i in range(2)
                ]
                for agent in agents:
                    await interrogated(server, agent.client_id)
                hunt = await server.hunts.create(HuntSpec(artifacts=[USERS]), creator="alice")
                assert hunt.state == "Paused"
                assert server.datastore.hunts.stats(hunt.hunt_id).scheduled == 0
                await server.hunts.start(hunt.hunt_id)
                await hunt_done(server, hunt.hunt_id, 2)
                # The late client checks in: it gets the hunt too, exactly once.
                async with running_agent(late_config):
                    await hunt_done(server, hunt.hunt_id, 3)
                    # Concurrent check-ins (a reconnect storm) change nothing.
                    await asyncio.gather(
                        *(server.hunts.client_checked_in(late_id) for _ in range(20))
                    )
                stats = server.datastore.hunts.stats(hunt.hunt_id)
                assert (stats.scheduled, stats.finished, stats.with_results) == (3, 3, 3)
                assert stats.rows == 3
                clients = server.datastore.hunts.clients(hunt.hunt_id)
                assert sorted(c.client_id for c in clients) == sorted(
                    [late_id, *(a.client_id for a in agents)]
                )
                assert {c.state for c in clients} == {"Finished"}

    asyncio.run(scenario())


def test_labels_and_os_conditions(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with contextlib.AsyncExitStack() as stack:
                a, b, c = [
                    await stack.enter_async_context(
                        running_agent(agent_config(deployment, tmp_path / name))
                    )
                    for name in ("a", "b", "c")
                ]
                for agent in (a, b, c):
                    await interrogated(server, agent.client_id)
                await server.label(a.client_id, add=["web"])
                await server.label(b.client_id, add=["web", "quarantined"])
                spec = HuntSpec(
                    artifacts=[USERS], include_labels=["web"], exclude_labels=["quarantined"]
                )
                hunt = await server.hunts.create(spec, creator="alice")
                await server.hunts.start(hunt.hunt_id)
                await hunt_done(server, hunt.hunt_id, 1)
                [only] = server.datastore.hunts.clients(hunt.hunt_id)
                assert only.client_id == a.client_id
                # c gains the label while the hunt runs: it is scheduled at once.
                await server.label(c.client_id, add=["web"])
                await hunt_done(server, hunt.hunt_id, 2)
                # An OS condition that matches nobody here.
                windows = await server.hunts.create(
                    HuntSpec(artifacts=[USERS], os=["windows"]), creator="alice"
                )
                await server.hunts.start(windows.hunt_id)
                await asyncio.sleep(1.0)
                assert server.datastore.hunts.stats(windows.hunt_id).scheduled == 0
                # hunt_add puts one client in anyway, even once the hunt is paused.
                await server.hunts.pause(windows.hunt_id)
                assert await server.hunts.hunt_add(windows.hunt_id, c.client_id)
                assert not await server.hunts.hunt_add(windows.hunt_id, c.client_id)
                await hunt_done(server, windows.hunt_id, 1)

    asyncio.run(scenario())


def test_stop_cancels_what_is_still_running(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slow = ("Linux.Sys.Execve", {"Argv": '["sleep", "30"]'})

    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "h")) as agent:
                await interrogated(server, agent.client_id)
                hunt = await server.hunts.create(HuntSpec(artifacts=[slow]), creator="alice")
                await server.hunts.start(hunt.hunt_id)
                await wait_until(lambda: server.datastore.hunts.stats(hunt.hunt_id).in_progress)
                # The agent remembers the hunt, and names it when it next checks in.
                assert agent.spool.seen_hunts() == [hunt.hunt_id]
                await server.hunts.stop(hunt.hunt_id, cancel_running=True)
                stats = server.datastore.hunts.stats(hunt.hunt_id)
                assert stats.cancelled == 1 and stats.in_progress == 0
                assert server.datastore.hunts.get(hunt.hunt_id).state == "Stopped"
                with pytest.raises(HuntError, match="cannot start"):
                    await server.hunts.start(hunt.hunt_id)

    asyncio.run(scenario())


def test_combined_results_pages_and_exports(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with running_server(deployment) as server:
            async with contextlib.AsyncExitStack() as stack:
                agents = [
                    await stack.enter_async_context(
                        running_agent(agent_config(deployment, tmp_path / f"h{i}"))
                    )
                    for i in range(3)
                ]
                for agent in agents:
                    await interrogated(server, agent.client_id)
                hunt = await server.hunts.create(
                    HuntSpec(artifacts=[("Linux.Sys.Users", {})]), creator="alice"
                )
                await server.hunts.start(hunt.hunt_id)
                await hunt_done(server, hunt.hunt_id, 3)
                results = server.hunt_results
                per_client = server.datastore.hunts.stats(hunt.hunt_id).rows // 3
                total = results.count(hunt.hunt_id, "Linux.Sys.Users")
                assert total == per_client * 3
                everything = results.page(hunt.hunt_id, "Linux.Sys.Users", "", 0, total + 10)
                assert len(everything) == total
                assert {r["client_id"] for r in everything} == {a.client_id for a in agents}
                assert all(r["hostname"] and "username" in r for r in everything)
                # A page that straddles two clients' result sets.
                middle = results.page(hunt.hunt_id, "Linux.Sys.Users", "", per_client - 1, 2)
                assert middle == everything[per_client - 1 : per_client + 1]
                for fmt in ("jsonl", "csv", "parquet"):
                    out = io.BytesIO()
                    assert results.export(hunt.hunt_id, "Linux.Sys.Users", "", fmt, out) == total
                    data = out.getvalue()
                    if fmt == "jsonl":
                        rows = [json.loads(line) for line in data.splitlines()]
                        assert rows == everything
                    elif fmt == "csv":
                        rows = list(csv.DictReader(io.StringIO(data.decode())))
                        assert [r["username"] for r in rows] == [r["username"] for r in everything]
                    else:
                        table = pq.read_table(io.BytesIO(data))
                        assert table.num_rows == total
                        assert table.column("client_id").to_pylist() == [
                            r["client_id"] for r in everything
                        ]

    asyncio.run(scenario())


def test_recurring_hunts_and_expiry(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        async with running_server(deployment) as server:
            template = await server.hunts.create(
                HuntSpec(artifacts=[USERS], every_seconds=3600, description="hourly"),
                creator="alice",
            )
            await server.hunts.start(template.hunt_id)
            now = template.created
            await server.hunts.tick(now + 1)
            await server.hunts.tick(now + 2)  # not due again yet
            children = [h for h in server.datastore.hunts.list() if h.parent_id == template.hunt_id]
            assert len(children) == 1
            child = children[0]
            assert child.state == "Running" and child.expires <= now + 1 + 3600
            await server.hunts.tick(now + 3602)
            children = [h for h in server.datastore.hunts.list() if h.parent_id == template.hunt_id]
            assert len(children) == 2
            # The first iteration expired before the second began.
            assert server.datastore.hunts.get(child.hunt_id).state == "Stopped"
            # The same with a cron schedule: at 03:00 UTC every day.
            nightly = await server.hunts.create(
                HuntSpec(artifacts=[USERS], cron="0 3 * * *"), creator="alice"
            )
            await server.hunts.start(nightly.hunt_id)
            three_am = (int(now) // 86400 + 1) * 86400 + 3 * 3600
            await server.hunts.tick(three_am - 60)  # the first iteration starts at once
            await server.hunts.tick(three_am - 30)
            await server.hunts.tick(three_am + 1)
            runs = [h for h in server.datastore.hunts.list() if h.parent_id == nightly.hunt_id]
            assert len(runs) == 2
            assert max(r.expires for r in runs) <= three_am + 1 + 86400
            with pytest.raises(HuntError, match="cron: minute"):
                await server.hunts.create(HuntSpec(artifacts=[USERS], cron="99 * * * *"), "x")

    asyncio.run(scenario())
