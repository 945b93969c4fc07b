"""The fleet simulator against a real in-process server: enrollment, interrogation, canned
results, going offline and back, cancellation, resending what was not acknowledged, key cache."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import msgspec
import pytest

from peregrine.agent.outbox import START_HOLD_SECONDS
from peregrine.config import ClientConfig, GeneratedConfig
from peregrine.loadtest import Fleet, KeyStore, os_chooser
from peregrine.protocol.keepalive import Keepalive
from peregrine.server.app import Server
from tests.server.harness import make_deployment, running_server, wait_until

OSES = ("linux", "windows", "darwin")


def fast(deployment: GeneratedConfig, **changes: object) -> ClientConfig:
    return msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=1.0, **changes)


def os_by_index(index: int) -> str:
    return OSES[index % 3]


def test_two_hundred_clients_enroll_and_are_interrogated(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(
                fast(deployment), 200, key_dir=tmp_path / "keys", os_for=os_by_index,
                ramp_per_second=400,
            )  # fmt: skip
            await fleet.start()
            try:
                await fleet.wait_connected(200, timeout=60)
                ids = fleet.client_ids
                assert len(set(ids)) == 200
                await wait_until(lambda: len(server.connections) == 200, 60)
                assert set(server.connections.client_ids()) == set(ids)
                clients = server.datastore.clients

                def all_interrogated() -> bool:
                    return all((r := clients.get(c)) and r.interrogated for c in ids)

                await wait_until(all_interrogated, 120, 0.25)
                for index, client_id in enumerate(ids):
                    record = clients.get(client_id)
                    assert record is not None
                    assert record.hostname == f"sim-{index:05d}"
                    assert record.os == os_by_index(index)
                    assert record.users == ["sim"]
                    assert record.ip_addresses[0] == "127.0.0.1"
                stats = fleet.snapshot()
                assert stats.enrolled == 200 and stats.ever_connected == 200
                assert stats.flows_answered == 200  # one interrogation each
                assert stats.error_count == 0
                assert len(stats.connect_latencies) == 200
            finally:
                await fleet.stop()
            await wait_until(lambda: len(server.connections) == 0, 30)

    asyncio.run(scenario())


def test_a_collection_returns_the_canned_rows(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(fast(deployment), 3, key_dir=tmp_path / "keys", rows=2500, row_bytes=200)
            await fleet.start()
            try:
                await fleet.wait_connected(3, timeout=30)
                client_id = fleet.client_ids[1]
                flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "t")
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 60)
                assert done.state == "Finished"
                assert done.rows == 2500
                assert done.sources["Generic.System.Pslist/"]["rows"] == 2500
                fs = server.filestore
                assert fs.row_count(client_id, flow.flow_id, "Generic.System.Pslist", "") == 2500
                [row] = fs.read_rows(client_id, flow.flow_id, "Generic.System.Pslist", "", 2499, 1)
                assert row == {"row": 2499, "data": "x" * 200}
                # Everything was acknowledged: the simulated client holds nothing.
                await wait_until(lambda: not fleet.sim(1).unacked and not fleet.sim(1).flows)
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_going_offline_and_back_keeps_the_client_id(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(fast(deployment), 10, key_dir=tmp_path / "keys")
            await fleet.start()
            try:
                await fleet.wait_connected(10, timeout=30)
                ids = fleet.client_ids
                await wait_until(lambda: len(server.connections) == 10)
                before = {c: server.datastore.clients.get(c) for c in ids}
                await fleet.set_online([0, 1, 2], False)
                assert fleet.connected == 7
                await wait_until(lambda: len(server.connections) == 7)
                assert not {ids[0], ids[1], ids[2]} & set(server.connections.client_ids())
                await asyncio.sleep(0.5)  # offline stays offline
                assert fleet.connected == 7
                await fleet.set_online([0, 1, 2], True)
                await fleet.wait_connected(10, timeout=30)
                await wait_until(lambda: len(server.connections) == 10)
                assert fleet.client_ids == ids
                assert set(server.connections.client_ids()) == set(ids)
                stats = fleet.snapshot()
                assert stats.enrolled == 10  # the returning clients did not enroll again
                assert stats.sessions == 13
                for client_id in ids[:3]:
                    record = server.datastore.clients.get(client_id)
                    assert record is not None and record.first_seen == before[client_id].first_seen
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_results_made_while_offline_are_sent_after_the_reconnect(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(
                fast(deployment), 1, key_dir=tmp_path / "keys", rows=1200,
                answer_delay=lambda i: START_HOLD_SECONDS + 3.0,
            )  # fmt: skip
            # The start goes out after START_HOLD_SECONDS (the flow shows In progress); the rows
            # come 3 s later, when the agent is offline. A delay of just the hold time let the
            # rows follow the start at once, so the flow could finish before it went offline.
            await fleet.start()
            try:
                await fleet.wait_connected(1, timeout=30)
                [client_id] = fleet.client_ids
                # Let the interrogation finish first (it also waits answer_delay).
                await wait_until(
                    lambda: (r := server.datastore.clients.get(client_id)) and r.interrogated
                )
                flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "t")
                await server.wait_for_flow(flow.flow_id, ["In progress"], 10)
                await fleet.set_online([0], False)
                # The rows are made while offline and wait in memory.
                await wait_until(lambda: fleet.sim(0).flows[flow.flow_id].done, 10)
                assert fleet.sim(0).unacked
                await fleet.set_online([0], True)
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 30)
                assert done.state == "Finished" and done.rows == 1200
                assert fleet.snapshot().messages_resent >= 3  # two batches, source, flow end
                await wait_until(lambda: not fleet.sim(0).unacked)
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_results_refused_for_a_full_disk_are_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peregrine.server.session

    monkeypatch.setattr(peregrine.server.session, "STORAGE_RETRY_SECONDS", 0.5)
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(fast(deployment), 1, key_dir=tmp_path / "keys", rows=3000)
            await fleet.start()
            try:
                await fleet.wait_connected(1, timeout=30)
                [client_id] = fleet.client_ids
                await wait_until(
                    lambda: (r := server.datastore.clients.get(client_id)) and r.interrogated
                )
                reserve = server.filestore.min_free_bytes
                server.filestore.min_free_bytes = 1 << 62  # the disk is "full"
                flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "t")
                await wait_until(lambda: fleet.stats.errors["storage_unavailable"] >= 1, 10)
                server.filestore.min_free_bytes = reserve
                done = await server.wait_for_flow(flow.flow_id, ["Finished", "Error"], 30)
                assert done.state == "Finished" and done.rows == 3000
                assert fleet.snapshot().messages_resent >= 1
                await wait_until(lambda: not fleet.sim(0).unacked)
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_a_cancelled_collection_stops(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(fast(deployment), 1, key_dir=tmp_path / "keys", rows=5, answer_delay=30.0)
            await fleet.start()
            try:
                await fleet.wait_connected(1, timeout=30)
                [client_id] = fleet.client_ids
                flow = await server.collect(client_id, [("Generic.System.Pslist", {})], "t")
                await server.wait_for_flow(flow.flow_id, ["In progress"], 10)
                assert await server.collections.cancel(flow.flow_id)
                await wait_until(lambda: fleet.snapshot().flows_cancelled == 1, 10)
                await wait_until(lambda: flow.flow_id not in fleet.sim(0).flows, 10)
                record = server.datastore.collections.get(flow.flow_id)
                assert record is not None and record.state == "Cancelled" and record.rows == 0
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_the_key_cache_brings_back_the_same_clients(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    keys = tmp_path / "keys"

    async def scenario() -> None:
        async with running_server(deployment) as server:
            first = Fleet(fast(deployment), 30, key_dir=keys)
            await first.start()
            await first.wait_connected(30, timeout=30)
            ids = first.client_ids
            await wait_until(
                lambda: all((r := server.datastore.clients.get(c)) and r.interrogated for c in ids),
                60,
            )
            await first.stop()
            assert first.stats.keys_generated == 30 and first.stats.enrolled == 30
            assert stat.S_IMODE((keys / "keys.msgpack").stat().st_mode) == 0o600

            second = Fleet(fast(deployment), 40, key_dir=keys)
            await second.start()
            try:
                await second.wait_connected(40, timeout=30)
                assert second.client_ids[:30] == ids
                assert second.stats.keys_generated == 10
                assert second.stats.enrolled == 10  # only the new ten enrolled
                # The returning clients were not interrogated again.
                for client_id in ids:
                    assert len(server.datastore.collections.list_for_client(client_id)) == 1
            finally:
                await second.stop()

    asyncio.run(scenario())


def test_a_clone_is_told_to_reidentify_and_gets_a_new_key(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            original = Fleet(fast(deployment), 1, key_dir=tmp_path / "a")
            await original.start()
            await original.wait_connected(1, timeout=30)
            # A copy of the key directory is a cloned machine.
            (tmp_path / "b").mkdir(mode=0o700)
            (tmp_path / "b" / "keys.msgpack").write_bytes(
                (tmp_path / "a" / "keys.msgpack").read_bytes()
            )
            clone = Fleet(fast(deployment), 1, key_dir=tmp_path / "b")
            await clone.start()
            try:
                await clone.wait_connected(1, timeout=30)
                assert clone.stats.errors["reidentified"] == 1
                assert clone.client_ids != original.client_ids
                await wait_until(lambda: len(server.connections) == 2)
                # The new key is what the clone's cache now holds.
                [raw] = KeyStore(tmp_path / "b").load(1)
                assert raw == clone.sim(0).raw_key
            finally:
                await clone.stop()
                await original.stop()

    asyncio.run(scenario())


def test_a_wrong_secret_is_rejected_and_nothing_connects(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(fast(deployment, enrollment_secret="w" * 32), 3, key_dir=tmp_path / "k")
            await fleet.start()
            try:
                await wait_until(lambda: fleet.stats.errors["rejected"] >= 3, 20)
                assert fleet.connected == 0 and len(server.connections) == 0
                assert all(server.datastore.clients.get(c) is None for c in fleet.client_ids)
            finally:
                await fleet.stop()

    asyncio.run(scenario())


def test_only_the_deployments_frontends_can_be_targeted(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    with pytest.raises(ValueError, match="not a frontend of this deployment"):
        Fleet(deployment.client, 1, key_dir=tmp_path / "k", urls=["wss://10.1.2.3:8000/agent"])


def test_the_os_mix_is_spread_evenly() -> None:
    os_for = os_chooser({"linux": 2, "windows": 1, "darwin": 1})
    first = [os_for(i) for i in range(2000)]
    assert 950 <= first.count("linux") <= 1050
    assert 450 <= first.count("windows") <= 550
    assert 450 <= first.count("darwin") <= 550
    # Any prefix (e.g. the half that is online) has the mix too, not a block of one OS.
    assert 90 <= [os_for(i) for i in range(200)].count("linux") <= 110
    with pytest.raises(ValueError, match="unknown OS"):
        os_chooser({"plan9": 1})


def test_simulated_agents_ping_from_one_task_and_the_server_skips_its_pings(
    tmp_path: Path,
) -> None:
    """Each simulated agent pings every ``ping_interval`` as the real one does (websockets'
    keepalive), from the fleet's one keepalive task; the server, hearing them, sends none."""
    deployment = make_deployment(tmp_path / "deploy")
    interval, count = 0.3, 20

    async def scenario() -> None:
        server = Server(deployment.server)
        server.connections.keepalive = Keepalive(2 * interval, 4 * interval, 0.05)
        await server.start()
        fleet = Fleet(fast(deployment), count, key_dir=tmp_path / "keys", ping_interval=interval)
        try:
            await fleet.start()
            await fleet.wait_connected(count, timeout=60)
            await wait_until(lambda: len(server.connections) == count, 30)
            assert all(s.ws is not None and s.ws.keepalive_task is None for s in fleet.sims)
            await asyncio.sleep(8 * interval)
            assert fleet.keepalive is not None and fleet.keepalive.pings >= 5 * count
            assert len(server.connections) == count  # every pong came back
            assert server.connections.keepalive.skipped >= 2 * count
            assert server.connections.keepalive.pings == 0
        finally:
            await fleet.stop()
            await server.stop()

    asyncio.run(scenario())
