"""Long results without time-outs or memory growth: streamed hunt exports over real agents, and
live state as server-sent events (no polling) until a collection or hunt is final."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import Live, live_deployment

ROWS_PER_AGENT = 100_000
AGENTS = 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_deployment(tmp_path_factory.mktemp("api-fleet"), agents=AGENTS) as live:
        yield live


@pytest.fixture(scope="module")
def big_hunt(fleet: Live) -> str:
    """A finished hunt: ROWS_PER_AGENT rows from each agent, through the API."""
    with fleet.http(fleet.tokens["investigator"]) as http:
        body = {"artifacts": [{"name": "Test.Numbers", "parameters": {"N": ROWS_PER_AGENT}}]}
        hunt = http.post("/hunts", json=body)
        assert hunt.status_code == 201, hunt.text
        hunt_id = hunt.json()["hunt_id"]
        assert http.post(f"/hunts/{hunt_id}/start").status_code == 200
        deadline = time.monotonic() + 120
        while True:
            stats = http.get(f"/hunts/{hunt_id}/stats").json()
            if stats["finished"] == AGENTS:
                break
            assert stats["errors"] == 0, stats
            assert time.monotonic() < deadline, stats
            time.sleep(0.2)
    assert stats["rows"] == AGENTS * ROWS_PER_AGENT
    return str(hunt_id)


def producers() -> list[threading.Thread]:
    """The export's producing threads in this (the server's) process."""
    return [t for t in threading.enumerate() if t.name.endswith("(produce)")]


def test_a_large_csv_export_streams_with_exact_rows(fleet: Live, big_hunt: str) -> None:
    total = AGENTS * ROWS_PER_AGENT
    params = {"artifact": "Test.Numbers", "format": "csv"}
    with (
        fleet.http(fleet.tokens["reader"]) as http,
        http.stream("GET", f"/hunts/{big_hunt}/export", params=params) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "content-length" not in response.headers  # sent as it is produced
        chunks = response.iter_bytes()
        first = next(chunks)
        # The client holds the first bytes and stops reading: the export is still being
        # produced (it waits for the reader instead of piling the whole result up in memory).
        time.sleep(0.5)
        running = producers()
        assert running and all(t.is_alive() for t in running), "the export was produced whole"
        data = first + b"".join(chunks)
    for thread in running:
        thread.join(10)
        assert not thread.is_alive()
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == total
    assert set(rows[0]) == {"client_id", "hostname", "n", "label"}
    per_client: dict[str, int] = {}
    for row in rows:
        per_client[row["client_id"]] = per_client.get(row["client_id"], 0) + 1
    assert per_client == {a.client_id: ROWS_PER_AGENT for a in fleet.agents}
    assert sum(int(r["n"]) for r in rows) == AGENTS * ROWS_PER_AGENT * (ROWS_PER_AGENT + 1) // 2


def test_jsonl_and_parquet_exports_have_every_row(fleet: Live, big_hunt: str) -> None:
    with fleet.http(fleet.tokens["reader"]) as http:
        jsonl = http.get(
            f"/hunts/{big_hunt}/export", params={"artifact": "Test.Numbers", "format": "jsonl"}
        )
        parquet = http.get(
            f"/hunts/{big_hunt}/export", params={"artifact": "Test.Numbers", "format": "parquet"}
        )
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    lines = jsonl.content.splitlines()
    assert len(lines) == AGENTS * ROWS_PER_AGENT
    assert json.loads(lines[0]).keys() == {"client_id", "hostname", "n", "label"}
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == AGENTS * ROWS_PER_AGENT


def test_result_pages_cover_the_hunt_exactly(fleet: Live, big_hunt: str) -> None:
    """Pages across the agents' result sets: the boundary page joins two flows."""
    with fleet.http(fleet.tokens["reader"]) as http:
        params: dict[str, Any] = {"artifact": "Test.Numbers", "limit": 1000}
        edge = http.get(
            f"/hunts/{big_hunt}/results", params={**params, "offset": ROWS_PER_AGENT - 500}
        ).json()
        last = http.get(
            f"/hunts/{big_hunt}/results", params={**params, "offset": 2 * ROWS_PER_AGENT - 10}
        ).json()
        beyond = http.get(
            f"/hunts/{big_hunt}/results", params={**params, "offset": 2 * ROWS_PER_AGENT}
        ).json()
    assert edge["total"] == 2 * ROWS_PER_AGENT
    assert len(edge["rows"]) == 1000
    assert len({r["client_id"] for r in edge["rows"]}) == 2
    assert [r["n"] for r in edge["rows"][:500]] == list(
        range(ROWS_PER_AGENT - 499, ROWS_PER_AGENT + 1)
    )
    assert [r["n"] for r in edge["rows"][500:]] == list(range(1, 501))
    assert len(last["rows"]) == 10 and beyond["rows"] == []


def read_events(response: Any) -> Iterator[tuple[float, dict[str, Any]]]:
    """(arrival time, data) for each event of a text/event-stream response."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.time(), json.loads(line[len("data: ") :])


def test_collection_events_follow_the_state_until_finished(live: Live) -> None:
    body = {
        "client_id": live.client_id,
        "artifacts": [{"name": "Test.Numbers", "parameters": {"N": 300_000}}],
    }
    with live.http(live.tokens["analyst"]) as http:
        flow = http.post("/collections", json=body).json()
        with http.stream("GET", f"/collections/{flow['flow_id']}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = list(read_events(response))  # ends by itself at the final state
    states = [data["state"] for _, data in events]
    assert states[-1] == "Finished"
    assert len(states) >= 2 and "Finished" not in states[:-1], states
    assert set(states[:-1]) <= {"Scheduled", "In progress"}
    rows = [data["rows"] for _, data in events]
    assert rows == sorted(rows) and rows[-1] == 300_000
    # Each event is a change: no two identical snapshots in a row.
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(events))
    # Delivered when it happened, not at the next keep-alive.
    arrived, final = events[-1]
    assert arrived - final["finished"] < 3.0, arrived - final["finished"]


def test_hunt_events_follow_the_statistics_until_stopped(live: Live) -> None:
    body = {"artifacts": [{"name": "Test.Numbers", "parameters": {"N": 50_000}}]}
    with live.http(live.tokens["investigator"]) as http:
        hunt_id = http.post("/hunts", json=body).json()["hunt_id"]
        assert http.post(f"/hunts/{hunt_id}/start").status_code == 200
        events: list[tuple[float, dict[str, Any]]] = []
        stopped = 0.0
        with (
            live.http(live.tokens["investigator"]) as control,
            http.stream("GET", f"/hunts/{hunt_id}/events") as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            for arrived, data in read_events(response):
                events.append((arrived, data))
                if data["finished"] == 1 and data["state"] == "Running" and not stopped:
                    assert control.post(f"/hunts/{hunt_id}/stop").status_code == 200
                    stopped = time.time()
    # The stop is delivered promptly (a hunt's state change wakes no flow event: it is seen by
    # re-reading, not at the next keep-alive 15 s later), and ends the stream.
    seen = [data for _, data in events]
    assert events[-1][0] - stopped < 3.0
    assert seen[0]["state"] == "Running"
    assert seen[-1]["state"] == "Stopped"
    assert seen[-1]["finished"] == 1 and seen[-1]["rows"] == 50_000


def test_events_of_unknown_objects_are_404(live: Live) -> None:
    with live.http(live.tokens["reader"]) as http:
        assert http.get("/collections/F.0000000000000000/events").status_code == 404
        assert http.get("/hunts/H.0000000000000000/events").status_code == 404
