"""Hunts on a simulated fleet: 2,000 clients with mixed labels and OSes, half of them offline
when the hunt starts, some dropping out mid-hunt; the scheduling races; restarts.

The fleet speaks the real protocol over real TLS (``peregrine.loadtest``). These are the slow
scale tests: marked ``slow``, run in CI.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from peregrine.config import GeneratedConfig
from peregrine.loadtest import Fleet
from peregrine.server.app import Server
from peregrine.services.hunts import HuntSpec
from tests.server.harness import make_deployment, wait_until

pytestmark = pytest.mark.slow

OSES = ("linux", "linux", "linux", "windows")
ARTIFACT = ("Generic.System.Pslist", {})


def os_for(index: int) -> str:
    return OSES[index % len(OSES)]


def labels_for(index: int) -> list[str]:
    labels = []
    if index % 3 == 0:
        labels.append("web")
    if index % 10 == 0:
        labels.append("quarantined")
    return labels


async def enrolled_fleet(
    server: Server, deployment: GeneratedConfig, tmp_path: Path, count: int, **options: object
) -> Fleet:
    config = msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=2.0)
    fleet = Fleet(
        config, count, key_dir=tmp_path / "keys", os_for=os_for, ramp_per_second=1000,
        rows=2, **options,
    )  # fmt: skip
    await fleet.start()
    await fleet.wait_connected(count, timeout=180)
    ids = fleet.client_ids
    clients = server.datastore.clients
    await wait_until(lambda: all((r := clients.get(c)) and r.interrogated for c in ids), 300, 0.5)
    for index, client_id in enumerate(ids):
        if labels_for(index):
            await server.label(client_id, add=labels_for(index))
    return fleet


def expected_matches(fleet: Fleet) -> set[str]:
    return {
        client_id
        for index, client_id in enumerate(fleet.client_ids)
        if "web" in labels_for(index)
        and "quarantined" not in labels_for(index)
        and os_for(index) == "linux"
    }


def flows_per_client(server: Server, hunt_id: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    offset = 0
    while page := server.datastore.hunts.clients(hunt_id, limit=1000, offset=offset):
        counts.update(c.client_id for c in page)
        offset += len(page)
    return counts


@pytest.mark.timeout(960)  # waits add up to 900 s (it runs in about 100 s)
def test_two_thousand_clients_half_offline_at_start(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        server = Server(deployment.server)
        await server.start()
        fleet = await enrolled_fleet(server, deployment, tmp_path, 2000, answer_delay=0.2)
        try:
            offline = list(range(1000, 2000))
            await fleet.set_online(offline, False)
            await wait_until(lambda: len(server.connections) == 1000, 60)
            spec = HuntSpec(
                artifacts=[ARTIFACT], include_labels=["web"], exclude_labels=["quarantined"],
                os=["linux"],
            )  # fmt: skip
            hunt = await server.hunts.create(spec, creator="alice")
            await server.hunts.start(hunt.hunt_id)
            expected = expected_matches(fleet)
            online_expected = {
                c for i, c in enumerate(fleet.client_ids) if c in expected and i < 1000
            }
            await wait_until(
                lambda: (
                    server.datastore.hunts.stats(hunt.hunt_id).scheduled == len(online_expected)
                ),
                120,
                0.5,
            )
            # Some of the online clients drop out mid-hunt and come back.
            dropping = list(range(0, 200))
            await fleet.set_online(dropping, False)
            await fleet.set_online(offline, True)  # the other half checks in
            await asyncio.sleep(1.0)
            await fleet.set_online(dropping, True)

            def complete() -> bool:
                stats = server.datastore.hunts.stats(hunt.hunt_id)
                return stats.scheduled == len(expected) and stats.finished == len(expected)

            await wait_until(complete, 240, 1.0)
            counts = flows_per_client(server, hunt.hunt_id)
            assert set(counts) == expected
            assert set(counts.values()) == {1}  # each client exactly once
            stats = server.datastore.hunts.stats(hunt.hunt_id)
            assert stats.rows == stats.finished * 2  # Pslist answered with 2 canned rows
        finally:
            await fleet.stop()
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(1020)  # waits add up to about 960 s
def test_races_while_a_hunt_starts_and_a_restart_mid_scheduling(tmp_path: Path) -> None:
    """A throttled start (no thundering herd) raced by concurrent check-ins and a label added
    mid-start, then the server restarted part-way: every client still gets it exactly once."""
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        server = Server(deployment.server)
        await server.start()
        fleet = await enrolled_fleet(server, deployment, tmp_path, 600)
        try:
            spec = HuntSpec(
                artifacts=[ARTIFACT], include_labels=["web"], notifications_per_second=100
            )
            hunt = await server.hunts.create(spec, creator="alice")
            await server.hunts.start(hunt.hunt_id)
            late_label = [c for i, c in enumerate(fleet.client_ids) if "web" not in labels_for(i)][
                :50
            ]
            # Races: check-ins of every client at once, and labels added during the start.
            await asyncio.gather(
                *(server.hunts.client_checked_in(c) for c in fleet.client_ids[:300]),
                *(server.label(c, add=["web"]) for c in late_label),
            )
            stats = server.datastore.hunts.stats(hunt.hunt_id)
            assert stats.scheduled > 0
        finally:
            await server.stop()  # part-way through the throttled start
        server = Server(deployment.server)
        await server.start()
        try:
            expected = {c for i, c in enumerate(fleet.client_ids) if "web" in labels_for(i)} | set(
                late_label
            )
            await fleet.wait_connected(600, timeout=120)
            await wait_until(
                lambda: server.datastore.hunts.stats(hunt.hunt_id).scheduled == len(expected),
                180,
                0.5,
            )
            await asyncio.sleep(2.0)  # any straggling duplicate would show up now
            counts = flows_per_client(server, hunt.hunt_id)
            assert set(counts) == expected
            assert set(counts.values()) == {1}
            await wait_until(
                lambda: server.datastore.hunts.stats(hunt.hunt_id).finished == len(expected),
                180,
                0.5,
            )
        finally:
            await fleet.stop()
            await server.stop()

    asyncio.run(scenario())
