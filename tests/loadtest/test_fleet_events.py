"""Simulated clients run assigned event artifacts: canned process starts reach a real server,
are stored per client, and the built-in rule raises one alert per program started from /tmp."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest

from peregrine.loadtest import Fleet
from tests.server.harness import make_deployment, running_server, wait_until

ARTIFACT = "Linux.Events.ProcessExecutions"
ALL = frozenset({"EXECVE", "FILESYSTEM_READ"})


@pytest.mark.timeout(120)
def test_simulated_clients_send_events_that_are_stored_and_matched(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    client = msgspec.structs.replace(deployment.client, poll_min=0.2, poll_max=1.0)

    async def scenario() -> None:
        async with running_server(deployment) as server:
            fleet = Fleet(client, 3, key_dir=tmp_path / "keys", events_per_second=400)
            await fleet.start()
            try:
                await fleet.wait_connected(3, timeout=60)
                await server.services.event_monitoring.assign(ARTIFACT, {}, [], "admin", ALL)
                files = server.services.event_monitoring.files

                def stored(client_id: str) -> list[dict[str, object]]:
                    return list(files.iter_rows(client_id, ARTIFACT, 0, time.time() + 60))

                # Rows 999, 1999... of each stream are a program in /tmp: one alert each.
                await wait_until(
                    lambda: all(len(stored(c)) >= 1000 for c in fleet.client_ids), 60, 0.5
                )

                def alerted() -> set[str | None]:
                    query = server.datastore.alerts.query
                    return {a.client_id for a in query(rule_id="Linux.ProcessFromTmp")}

                await wait_until(lambda: alerted() == set(fleet.client_ids), 20)
            finally:
                await fleet.stop()
            alerts = server.datastore.alerts.query(rule_id="Linux.ProcessFromTmp", limit=1000)
            keys = [(a.client_id, a.event_seq) for a in alerts]
            assert len(keys) == len(set(keys))  # each event raised once
            assert {a.client_id for a in alerts} == set(fleet.client_ids)
            assert {(a.event_seq or 0) % 1000 for a in alerts} == {999}
            rows = stored(fleet.client_ids[0])
            seqs = [r["_seq"] for r in rows]
            assert seqs == list(range(1, len(seqs) + 1))  # numbered without a gap
            assert rows[998]["exe"] == "/tmp/.cache/x"
            assert fleet.snapshot().events_sent >= 3000

    asyncio.run(scenario())
