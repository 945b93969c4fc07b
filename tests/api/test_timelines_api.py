"""``/timelines`` over a real server and agent: a timeline of a real collection's rows, its
pages, the Timesketch export streamed, bad filters and definitions refused (audited)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from tests.api.conftest import Live, Objects


def test_a_real_collection_on_a_timeline(live: Live, objects: Objects) -> None:
    numbers = live.collect("Test.Numbers", {"N": 5})
    source = {"kind": "flow", "id": numbers, "artifact": "Test.Numbers", "time": "n",
              "desc": "Counted", "message": "{label}", "label": "numbers"}  # fmt: skip
    with live.http(live.tokens["analyst"]) as http:
        made = http.post("/timelines", json={"title": "Numbers", "sources": [source]})
        assert made.status_code == 201, made.text
        tid = made.json()["timeline_id"]
        page = http.get(f"/timelines/{tid}/rows", params={"limit": 2, "start": "3"})
        assert page.status_code == 200, page.text
        body = page.json()
        assert [r["message"] for r in body["rows"]] == ["row 00000003", "row 00000004"]
        assert body["rows"][0]["datetime"] == "1970-01-01T00:00:03+00:00"
        assert body["next_offset"] == 2
        exported = http.get(f"/timelines/{tid}/export", params={"q": "0000000"})
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "application/x-ndjson"
        assert int(exported.headers["x-peregrine-max-rows"]) >= 5
        events = [json.loads(line) for line in exported.text.splitlines()]
        assert [e["message"] for e in events] == [f"row {n:08d}" for n in range(1, 6)]
        assert all(e["timestamp_desc"] == "Counted" and datetime.fromisoformat(e["datetime"])
                   for e in events)  # fmt: skip
        as_csv = http.get(f"/timelines/{tid}/export", params={"format": "csv", "end": "2"})
        assert [r["message"] for r in csv.DictReader(io.StringIO(as_csv.text))] == ["row 00000001"]
        bad = http.get(f"/timelines/{tid}/rows", params={"start": "last tuesday"})
        assert bad.status_code == 400 and "neither epoch seconds nor an ISO 8601" in bad.text
        refused = http.post(
            "/timelines", json={"title": "x", "sources": [{**source, "message": "{n!r}"}]}
        )
        assert refused.status_code == 400 and "source 1: message" in refused.text
    [entry] = live.server.audit.query(action="timeline.create", result="refused", limit=1)
    assert entry.actor == "analyst-user"
    with live.http(live.tokens["reader"]) as http:
        assert http.get(f"/timelines/{tid}/rows").status_code == 403
        assert http.get(f"/timelines/{tid}").status_code == 404  # not shared
