"""Timelines: file MAC times, process starts from a hunt and login events on one time axis,
in order, filtered, paged, and exported in Timesketch's JSONL and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

import pytest

from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles
from peregrine.timelines import TimelineError, TimelineService
from peregrine.timelines.export import write
from peregrine.timelines.model import TimelineForbidden, TimelineNotFound
from peregrine.timelines.query import Filters
from tests.analysis.conftest import Fleet

INVESTIGATOR = frozenset({ANALYZE, READ_RESULTS})
READER = frozenset({READ_RESULTS})
T0 = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
BODYFILE = "Generic.Forensic.Bodyfile"
PSLIST = "Generic.System.Pslist"
LOGINS = "Linux.Events.Logins"


def evidence(fleet: Fleet, filestore: Filestore) -> list[dict[str, object]]:
    """One host's bodyfile, a hunt's process starts on two hosts, and login events."""
    one, two = fleet.client(1, "web-1"), fleet.client(2, "web-2")
    flow = fleet.flow(one, 1, BODYFILE)
    fleet.rows(
        one, flow, BODYFILE, ["path", "size", "mtime", "atime", "ctime", "btime"],
        [["/tmp/x.sh", 10, T0 + 10, T0 + 40, T0 + 10, 0],
         ["/etc/passwd", 900, T0 - 100, T0 + 50, T0 - 100, T0 - 1000]],
    )  # fmt: skip
    fleet.finish(flow)
    hunt = fleet.hunt(1, PSLIST)
    for number, client, rows in (
        (2, one, [[4242, "x.sh", "eve", "2026-11-30T12:00:20+00:00"]]),
        (3, two, [[77, "sshd", "root", "2026-11-30T11:00:00+00:00"]]),
    ):
        hunt_flow = fleet.flow(client, number, PSLIST, hunt_id=hunt)
        fleet.rows(client, hunt_flow, PSLIST, ["pid", "name", "user", "start_time"], rows)
        fleet.finish(hunt_flow)
    events = EventFiles(filestore.root, filestore.check_space, retention_days=100_000)
    events.append(one, LOGINS, "", 1, T0 + 30, ["user", "from"], [["eve", "203.0.113.9"]])
    return [
        {"kind": "flow", "id": flow, "artifact": BODYFILE, "label": "files",
         "time": ["mtime", "atime", "ctime", "btime"], "message": "{path} ({size} bytes)"},
        {"kind": "hunt", "id": hunt, "artifact": PSLIST, "label": "processes",
         "time": "start_time", "desc": "Process start",
         "message": "{name} ({pid}) started by {user} on {hostname}"},
        {"kind": "events", "artifact": LOGINS, "label": "logins", "time": "event_time",
         "desc": "Login", "message": "{user} logged in from {from}", "since": T0 - 86400},
    ]  # fmt: skip


def test_sources_merge_on_one_time_axis(
    fleet: Fleet, filestore: Filestore, timelines: TimelineService
) -> None:
    made = timelines.create("alice", INVESTIGATOR, "Intrusion", evidence(fleet, filestore))
    page = timelines.page(made.timeline_id, "alice", INVESTIGATOR, Filters(), 0, 100)
    got = [(r["datetime"], r["timestamp_desc"], r["message"]) for r in page["rows"]]
    iso = lambda offset: datetime.fromtimestamp(T0 + offset, UTC).isoformat()  # noqa: E731
    assert got == [
        (iso(-3600), "Process start", "sshd (77) started by root on web-2"),
        (iso(-1000), "Creation Time", "/etc/passwd (900 bytes)"),
        (iso(-100), "Content Modification Time", "/etc/passwd (900 bytes)"),
        (iso(-100), "Metadata Modification Time", "/etc/passwd (900 bytes)"),
        (iso(10), "Content Modification Time", "/tmp/x.sh (10 bytes)"),
        (iso(10), "Metadata Modification Time", "/tmp/x.sh (10 bytes)"),
        (iso(20), "Process start", "x.sh (4242) started by eve on web-1"),
        (iso(30), "Login", "eve logged in from 203.0.113.9"),
        (iso(40), "Last Access Time", "/tmp/x.sh (10 bytes)"),
        (iso(50), "Last Access Time", "/etc/passwd (900 bytes)"),
    ]  # the bodyfile's btime 0 (not kept) gives no row
    assert page["next_offset"] is None


def test_filters_and_pages(fleet: Fleet, filestore: Filestore, timelines: TimelineService) -> None:
    made = timelines.create("alice", INVESTIGATOR, "Intrusion", evidence(fleet, filestore))
    tid = made.timeline_id

    def messages(filters: Filters, offset: int = 0, limit: int = 100) -> list[str]:
        rows = timelines.page(tid, "alice", INVESTIGATOR, filters, offset, limit)["rows"]
        return [str(r["message"]) for r in rows]

    window = Filters(start=T0, end=T0 + 35)
    assert messages(window) == [
        "/tmp/x.sh (10 bytes)", "/tmp/x.sh (10 bytes)", "x.sh (4242) started by eve on web-1",
        "eve logged in from 203.0.113.9",
    ]  # fmt: skip
    assert set(messages(Filters(text="EVE"))) == {
        "x.sh (4242) started by eve on web-1", "eve logged in from 203.0.113.9"
    }  # fmt: skip
    assert messages(Filters(sources=["logins", "processes"])) == [
        "sshd (77) started by root on web-2", "x.sh (4242) started by eve on web-1",
        "eve logged in from 203.0.113.9",
    ]  # fmt: skip
    # Filter text and source names are values, never SQL.
    assert messages(Filters(text="' OR true OR '")) == []
    assert messages(Filters(sources=["logins') OR ('1'='1"])) == []
    first = timelines.page(tid, "alice", INVESTIGATOR, Filters(), 0, 4)
    second = timelines.page(tid, "alice", INVESTIGATOR, Filters(), first["next_offset"], 4)
    last = timelines.page(tid, "alice", INVESTIGATOR, Filters(), second["next_offset"], 4)
    assert (first["next_offset"], second["next_offset"], last["next_offset"]) == (4, 8, None)
    every = messages(Filters())
    assert [r["message"] for r in first["rows"] + second["rows"] + last["rows"]] == every


def test_timesketch_jsonl_and_csv(
    fleet: Fleet, filestore: Filestore, timelines: TimelineService
) -> None:
    made = timelines.create("alice", INVESTIGATOR, "Intrusion", evidence(fleet, filestore))
    rows = list(timelines.rows(made.timeline_id, "alice", INVESTIGATOR, Filters()))
    out = io.BytesIO()
    assert write(rows, "jsonl", out) == 10
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    for event in events:
        # Timesketch's required fields: message, datetime (ISO 8601), timestamp_desc.
        assert event["message"] and event["timestamp_desc"]
        assert datetime.fromisoformat(event["datetime"]).tzinfo is not None
        assert event["timestamp"] == int(datetime.fromisoformat(event["datetime"]).timestamp()
                                         * 1_000_000)  # fmt: skip
    login = next(e for e in events if e["source"] == "logins")
    assert login["user"] == "eve" and login["client_id"] == "C.0000000000000001"
    out = io.BytesIO()
    write(rows, "csv", out)
    table = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert len(table) == 10
    assert list(table[0])[:4] == ["message", "datetime", "timestamp", "timestamp_desc"]
    assert table[0]["hostname"] == "web-2" and json.loads(table[0]["data"])["pid"] == 77


def test_who_may_read_and_bad_definitions(
    fleet: Fleet, filestore: Filestore, timelines: TimelineService
) -> None:
    sources = evidence(fleet, filestore)
    made = timelines.create("alice", INVESTIGATOR, "Private", sources)
    with pytest.raises(TimelineNotFound):
        timelines.get(made.timeline_id, "bob", INVESTIGATOR)
    shared = timelines.create("alice", INVESTIGATOR, "Shared", sources, shared=True)
    assert timelines.get(shared.timeline_id, "rita", READER).title == "Shared"
    with pytest.raises(TimelineForbidden, match="ANALYZE"):
        timelines.page(shared.timeline_id, "rita", READER, Filters())
    with pytest.raises(TimelineForbidden, match="owner"):
        timelines.delete(shared.timeline_id, "bob", INVESTIGATOR)
    with pytest.raises(TimelineError, match=re.escape("source 1: message: {path.__class__}")):
        timelines.create(
            "alice", INVESTIGATOR, "x", [{**sources[0], "message": "{path.__class__}"}]
        )
    with pytest.raises(TimelineError, match="source 2: kind 'sql'"):
        timelines.create("alice", INVESTIGATOR, "x", [sources[0], {**sources[1], "kind": "sql"}])
    wrong = timelines.create("alice", INVESTIGATOR, "x", [{**sources[0], "time": "when"}])
    with pytest.raises(TimelineError, match=r"a time column its rows do not have.*when"):
        timelines.page(wrong.timeline_id, "alice", INVESTIGATOR, Filters())
