"""Event monitoring through the API and the Python client, against a real server and agent:
an assignment reaches the agent and its events come back (pages, an export, the live follow),
every change is audited, and bad assignments are refused with what to do."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peregrine.client import BadRequest, NotFound, Peregrine
from tests.api.conftest import Live, live_deployment

TICKS = "Test.Ticks"  # clock(60): its first row at once, then one a minute


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A deployment of its own: assignments reach every client of a server."""
    with live_deployment(tmp_path_factory.mktemp("events-api")) as live:
        yield live


def client_for(live: Live, role: str) -> Peregrine:
    return Peregrine(live.base, live.tokens[role], ca_cert=live.ca)


def wait_rows(api: Peregrine, client_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = api.events.rows(client_id, TICKS, start=0, limit=100)
        if len(rows) >= count:
            return rows
        time.sleep(0.3)
    raise AssertionError(f"fewer than {count} events of {TICKS} in 60 s")


@pytest.mark.timeout(180)
def test_assign_read_export_follow_and_unassign(own: Live, tmp_path: Path) -> None:
    client_id = own.client_id
    with client_for(own, "investigator") as api, client_for(own, "reader") as reader:
        answer = api.events.assign(TICKS)
        assert answer["version"] >= 1
        assert [a["artifact"] for a in answer["assignments"]] == [TICKS]
        assert reader.events.assignments() == answer

        [first] = wait_rows(reader, client_id, 1)
        assert (first["tick"], first["_seq"], first["_source"]) == (1, 1, "")
        assert time.time() - 120 < first["_time"] <= time.time()
        assert reader.events.rows(client_id, TICKS, start=0, end=first["_time"]) == []
        statuses = reader.events.status(client_id=client_id, artifact=TICKS)
        assert [(s["state"], s["restarts"]) for s in statuses] == [("running", 0)]

        out = reader.events.export(client_id, TICKS, tmp_path / "ticks.jsonl", start=0)
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert exported[0]["tick"] == 1 and exported[0]["_seq"] == 1
        # Without a range: the last day (and the next, for an agent whose clock runs fast).
        assert reader.events.rows(client_id, TICKS)[0]["_seq"] == 1
        out = reader.events.export(client_id, TICKS, tmp_path / "recent.jsonl")
        assert json.loads(out.read_text().splitlines()[0])["_seq"] == 1

        # Follow live: a new assignment restarts the worker, whose first tick comes at once.
        seen: list[dict[str, Any]] = []

        def follow() -> None:
            for batch in reader.events.follow(client_id=client_id, artifact=TICKS, seconds=40):
                seen.append(batch)
                return

        follower = threading.Thread(target=follow)
        follower.start()
        time.sleep(1.0)  # subscribed
        api.events.unassign(TICKS)
        api.events.assign(TICKS)
        follower.join(60)
        assert seen, "the follower saw no batch"
        assert seen[0]["client_id"] == client_id and seen[0]["first_seq"] >= 2
        assert seen[0]["rows"][0]["tick"] == 1
        seqs = [r["_seq"] for r in wait_rows(reader, client_id, 2)]
        assert seqs == list(range(1, len(seqs) + 1))

        final = api.events.unassign(TICKS)
        assert final["assignments"] == [] and final["version"] > answer["version"]
        with pytest.raises(NotFound, match="not assigned"):
            api.events.unassign(TICKS)
    actions = [
        (e.action, e.result)
        for e in own.server.audit.query(actor="investigator-user", since=time.time() - 600)
        if e.action.startswith("events.")
    ]
    assert actions.count(("events.assign", "ok")) == 2
    assert actions.count(("events.unassign", "ok")) == 2
    assert ("events.unassign", "refused") in actions


def test_bad_assignments_are_refused_with_what_to_do(own: Live) -> None:
    with client_for(own, "investigator") as api:
        with pytest.raises(BadRequest, match="not an event artifact"):
            api.events.assign("Test.Numbers")
        with pytest.raises(BadRequest, match=r"Nope\.Events"):
            api.events.assign("Nope.Events")
    refused = [
        e
        for e in own.server.audit.query(actor="investigator-user", since=time.time() - 60)
        if e.action == "events.assign" and e.result == "refused"
    ]
    assert len(refused) >= 2
