"""GET /fleet/events: the overview's snapshot as a server-sent event (status, running hunts,
collections in flight); ``limit`` ends the stream."""

from __future__ import annotations

import json

from tests.api.conftest import Live


def test_one_snapshot_then_the_end(live: Live) -> None:
    with live.http(live.tokens["reader"]) as http:
        answer = http.get("/fleet/events", params={"limit": 1})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    [event] = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    snapshot = json.loads(event.removeprefix("data: "))
    assert snapshot["status"]["clients"] >= 1 and snapshot["status"]["connected"] >= 1
    assert isinstance(snapshot["hunts"], list) and isinstance(snapshot["collections"], list)


def test_without_credentials_it_is_refused(live: Live) -> None:
    with live.http() as http:
        assert http.get("/fleet/events", params={"limit": 1}).status_code == 401
