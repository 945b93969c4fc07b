"""A hunt export is audited with how it really ended: refused, done, or failed mid-stream.

It used to be recorded "ok" before anything was streamed: an export of an unknown hunt left no
record at all, and one whose producer failed ended as an empty or cut file, 200 and "ok".
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from peregrine.api.streaming import stream_export
from tests.api.conftest import Live
from tests.server.harness import wait_until

PARAMS = {"artifact": "Test.Numbers", "format": "csv"}


def export_entries(live: Live, hunt_id: str, since: float) -> list[Any]:
    return live.server.audit.query(action="hunt.export", target=hunt_id, since=since)


def finished_hunt(live: Live, rows: int) -> str:
    """A stopped hunt whose one collection (on the live agent) has ``rows`` rows."""
    body = {"artifacts": [{"name": "Test.Numbers", "parameters": {"N": rows}}]}
    with live.http(live.tokens["administrator"]) as http:
        created = http.post("/hunts", json=body)
        assert created.status_code == 201, created.text
        hunt_id: str = created.json()["hunt_id"]
        assert http.post(f"/hunts/{hunt_id}/start").status_code == 200
        stats = live.server.datastore.hunts.stats
        live.run(wait_until(lambda: stats(hunt_id).finished >= 1, 90))
        assert http.post(f"/hunts/{hunt_id}/stop").status_code == 200
    return hunt_id


def test_a_whole_export_is_audited_ok(live: Live) -> None:
    hunt_id = finished_hunt(live, 5)
    started = time.time()
    with live.http(live.tokens["reader"]) as http:
        response = http.get(f"/hunts/{hunt_id}/export", params=PARAMS)
    assert response.status_code == 200 and len(response.text.splitlines()) == 6
    [entry] = export_entries(live, hunt_id, started)
    assert (entry.result, entry.actor) == ("ok", "reader-user")
    assert entry.parameters == {"status": 200, **PARAMS, "source": ""}


def test_an_export_of_an_unknown_hunt_is_audited_as_refused(live: Live) -> None:
    started = time.time()
    with live.http(live.tokens["reader"]) as http:
        response = http.get("/hunts/H.00000000000000ff/export", params=PARAMS)
    assert response.status_code == 404
    [entry] = export_entries(live, "H.00000000000000ff", started)
    assert entry.result == "refused" and "H.00000000000000ff" in (entry.reason or "")


def test_an_export_that_fails_while_streaming_is_audited_as_failed(live: Live) -> None:
    hunt_id = finished_hunt(live, 50)
    [entry] = live.server.datastore.hunts.clients(hunt_id)
    results = live.server.filestore.flow_dir(entry.client_id, entry.flow_id) / "results"
    [data] = results.glob("Test.Numbers*.jsonl")
    data.write_bytes(b"\xff" * data.stat().st_size)  # the stored rows no longer decode
    started = time.time()
    with live.http(live.tokens["reader"]) as http, pytest.raises(httpx.HTTPError):
        # The client sees a broken transfer, never a complete-looking empty file.
        http.get(f"/hunts/{hunt_id}/export", params=PARAMS)
    live.run(wait_until(lambda: len(export_entries(live, hunt_id, started)) >= 2, 10))
    newest, first = export_entries(live, hunt_id, started)
    assert (first.result, newest.result) == ("ok", "error")
    assert "Decode" in (newest.reason or ""), newest.reason


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_abandoned_export_stops_producing(live: Live) -> None:
    """A reader that hangs up after its first bytes: the producer, waiting for room in the full
    pipe, must stop instead of waiting for good (a thread and 16 chunks per abandoned export).
    The response's body is driven here, as the server drives it, so no socket buffer (32 MB
    on loopback) can absorb the export before the reader leaves."""
    hunt_id = finished_hunt(live, 150_000)  # 30 chunks: more than the pipe's 16
    before = set(threading.enumerate())
    body = stream_export(live.server.hunt_results, hunt_id, "Test.Numbers", "", "jsonl")
    assert next(body).startswith(b'{"client_id"')
    [producer] = [t for t in set(threading.enumerate()) - before if t.name.endswith("(produce)")]
    time.sleep(0.5)
    assert producer.is_alive()  # the pipe is full: it waits for the reader
    body.close()  # what the server does when the client disconnects
    producer.join(15)
    assert not producer.is_alive(), "the export's producer still waits for a reader"
