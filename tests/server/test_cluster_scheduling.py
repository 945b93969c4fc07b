"""At most once across hosts: several frontend processes, each with its own ``Server`` (its own
engine and group commit), schedule the same hunts on the same clients in one PostgreSQL
database at the same moment. Every client gets each hunt exactly once, a ``client_limit`` is
met exactly, and the processes' own counts agree (no two believe they scheduled one client).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import create_engine, make_url, text

from peregrine.config.model import load_server_config, save_config
from peregrine.datastore import Datastore, FlowRecord, open_datastore
from peregrine.datastore.collections import insert_flow
from peregrine.datastore.schema import hunt_clients
from peregrine.server.app import Server
from peregrine.services.hunts import HuntSpec
from tests.server.harness import make_deployment

PROCESSES = 4
CLIENTS = 300
LIMIT = 40
BATCH = 25
ROOT = Path(__file__).resolve().parents[2]


def schedule_everything(config_path: str, unlimited: str, limited: str, gate: str) -> None:
    """One frontend process: schedule both hunts on every client, in an order of its own,
    starting when the test opens the ``gate`` (once every process has said it is ready)."""
    server = Server(load_server_config(Path(config_path)))
    clients = sorted(server.datastore.clients.count() and _all_clients(server))
    random.Random(os.getpid()).shuffle(clients)

    async def run() -> dict[str, int]:
        hunts = server.hunts
        open_hunt = await asyncio.to_thread(server.datastore.hunts.get, unlimited)
        limited_hunt = await asyncio.to_thread(server.datastore.hunts.get, limited)
        (Path(gate) / f"ready-{os.getpid()}").touch()
        while not (go := Path(gate) / "go").exists():
            await asyncio.sleep(0.02)
        await asyncio.sleep(max(0.0, float(go.read_text()) - time.time()))  # all at once
        counts = {"unlimited": 0, "limited": 0}

        async def batch(chunk: list[str]) -> None:
            requests = await asyncio.to_thread(hunts._requests_for, open_hunt, chunk)
            done = await server.datastore.group.run(
                server.datastore.hunts.schedule_many, unlimited, requests, time.time()
            )
            if done is None:  # raced with another process: decide one by one
                for client_id in chunk:
                    scheduled = await hunts.schedule(open_hunt, client_id)
                    counts["unlimited"] += scheduled
            else:
                counts["unlimited"] += len(done)

        async def one(client_id: str) -> None:
            scheduled = await hunts.schedule(limited_hunt, client_id)
            counts["limited"] += scheduled

        chunks = [clients[i : i + BATCH] for i in range(0, len(clients), BATCH)]
        await asyncio.gather(*(batch(c) for c in chunks), *(one(c) for c in clients))
        return counts

    counts = asyncio.run(run())
    server.datastore.close()
    print(json.dumps(counts))


def _all_clients(server: Server) -> list[str]:
    return [c.client_id for c in server.datastore.clients.all_for_index(None, CLIENTS * 2)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_frontend_processes_scheduling_one_hunt_schedule_each_client_once(
    tmp_path: Path, postgres_database: str
) -> None:
    deployment = make_deployment(tmp_path / "deploy")
    config = msgspec.structs.replace(deployment.server, datastore_url=postgres_database)
    config_path = tmp_path / "server.yaml"
    save_config(config, config_path)

    server = Server(config)
    try:
        for n in range(CLIENTS):
            client_id = f"C.{n:016x}"
            server.datastore.clients.enroll(client_id, client_id.encode(), time.time())
        spec = HuntSpec(artifacts=[("Generic.Client.Info", {})])
        unlimited = asyncio.run(server.hunts.create(spec, "test")).hunt_id
        limited_spec = HuntSpec(artifacts=[("Generic.Client.Info", {})], client_limit=LIMIT)
        limited = asyncio.run(server.hunts.create(limited_spec, "test")).hunt_id
        for hunt_id in (unlimited, limited):
            assert server.datastore.hunts.set_state(hunt_id, "Running", time.time())
    finally:
        server.datastore.close()

    # The processes start together once each has imported and opened the database (a fixed
    # delay was too short on a loaded machine: one process did everything, nothing raced).
    gate = tmp_path / "gate"
    gate.mkdir()
    code = (
        "import sys; from tests.server.test_cluster_scheduling import schedule_everything; "
        "schedule_everything(*sys.argv[1:5])"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(config_path), unlimited, limited, str(gate)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    deadline = time.monotonic() + 180
    while len(list(gate.glob("ready-*"))) < PROCESSES:
        assert time.monotonic() < deadline, "the scheduling processes did not all start"
        assert all(p.poll() is None for p in processes), "a scheduling process ended early"
        time.sleep(0.05)
    (gate / "go.tmp").write_text(str(time.time() + 0.2))
    (gate / "go.tmp").rename(gate / "go")
    counts = []
    for proc in processes:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode(errors="replace")
        counts.append(json.loads(out.decode().strip().splitlines()[-1]))

    engine = create_engine(make_url(postgres_database).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            for hunt_id, expected in ((unlimited, CLIENTS), (limited, LIMIT)):
                pairs, clients, flows, tasks = conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT hc.client_id),"
                        " (SELECT count(*) FROM flows WHERE hunt_id = :h),"
                        " (SELECT count(*) FROM tasks t JOIN flows f USING (flow_id)"
                        "   WHERE f.hunt_id = :h)"
                        " FROM hunt_clients hc WHERE hc.hunt_id = :h"
                    ),
                    {"h": hunt_id},
                ).one()
                assert (pairs, clients, flows, tasks) == (expected,) * 4, hunt_id
    finally:
        engine.dispose()
    with open_datastore(postgres_database) as datastore:
        assert datastore.hunts.stats(unlimited).scheduled == CLIENTS  # derived: exact
    assert sum(c["unlimited"] for c in counts) == CLIENTS
    assert sum(c["limited"] for c in counts) == LIMIT
    # Somebody lost a race and fell back to one-by-one, or the run proved little: with BATCH
    # (25) clients a statement, one process can schedule all of them before the others begin
    # on a loaded box (seen once in a full run). Say so rather than pass as if it raced.
    if max(c["unlimited"] for c in counts) == CLIENTS:
        pytest.skip("one process scheduled every client before the others began: no race")


def test_a_client_scheduled_by_another_frontend_meanwhile_leaves_no_flow_behind(
    postgres_database: str,
) -> None:
    """The race, made deterministic: another frontend's transaction has inserted the (hunt,
    client) pair but not committed when this one's group commit tries; it commits; this one
    must answer False and leave nothing of its attempt (an orphan flow and task would reach
    the agent: the hunt would run twice there)."""
    with open_datastore(postgres_database) as datastore:
        client_id = "C.0000000000000001"
        datastore.clients.enroll(client_id, client_id.encode(), time.time())
        hunt_id = _running_hunt(datastore)
        other_flow = _flow(client_id, "F.0000000000000001")
        mine = _flow(client_id, "F.0000000000000002")
        engine = create_engine(make_url(postgres_database).set(drivername="postgresql+psycopg"))
        try:
            with engine.connect() as other:
                with other.begin():  # another frontend, mid-transaction
                    insert_flow(other, dataclasses.replace(other_flow, hunt_id=hunt_id), b"x")
                    other.execute(
                        hunt_clients.insert().values(
                            hunt_id=hunt_id, client_id=client_id,
                            flow_id=other_flow.flow_id, scheduled=time.time(),
                        )
                    )  # fmt: skip
                    attempt = datastore.group.submit(
                        datastore.hunts.schedule_client, hunt_id, mine, b"y", time.time()
                    )
                    time.sleep(1.0)  # ours is now waiting on the other's (hunt, client) row
                    assert not attempt.done()
            assert attempt.result(timeout=30) is False
            assert datastore.collections.get(mine.flow_id) is None
            with engine.connect() as conn:
                flows = conn.execute(
                    text("SELECT flow_id FROM flows WHERE hunt_id = :h"), {"h": hunt_id}
                ).scalars()
                assert list(flows) == [other_flow.flow_id]
                tasks = conn.execute(text("SELECT count(*) FROM tasks")).scalar()
                assert tasks == 1
        finally:
            engine.dispose()


def _running_hunt(datastore: Datastore) -> str:
    from peregrine.datastore import HuntRecord, new_hunt_id

    now = time.time()
    record = HuntRecord(
        hunt_id=new_hunt_id(), description="", tags=[], artifacts=[], limits={},
        include_labels=[], exclude_labels=[], os=[], client_limit=None, expires=now + 3600,
        creator="test", created=now, started=None, stopped=None, state="Paused",
        notifications_per_second=None, permissions=[], schedule=None, parent_id=None,
        last_run=None,
    )  # fmt: skip
    datastore.hunts.create(record)
    assert datastore.hunts.set_state(record.hunt_id, "Running", now)
    return record.hunt_id


def _flow(client_id: str, flow_id: str) -> FlowRecord:
    return FlowRecord(
        flow_id=flow_id, client_id=client_id, creator="test", created=time.time(),
        state="Scheduled", artifacts=[], request={},
    )  # fmt: skip
