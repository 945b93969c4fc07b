"""Event rows in the filestore: stored once per seq, filed by day, read by time range, expired."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles

CLIENT = "C.00000000000000aa"
ART = "Linux.Events.Test"


def _t(day: int, hour: int = 12) -> float:
    return datetime(2026, 11, day, hour, tzinfo=UTC).timestamp()


NOW = _t(30)


@pytest.fixture
def events(tmp_path: Path) -> EventFiles:
    store = Filestore(tmp_path, min_free_bytes=0)
    return EventFiles(store.root, store.check_space, retention_days=30)


def _append(events: EventFiles, seq: int, when: float, n: int = 2) -> tuple[str, int] | None:
    rows = [[seq + i, f"row {seq + i}"] for i in range(n)]
    return events.append(CLIENT, ART, "", seq, when, ["n", "label"], rows)


def test_a_batch_is_stored_once_whatever_resends(
    events: EventFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    assert _append(events, 1, _t(29)) == ("2026-11-29", 0)
    assert _append(events, 3, _t(29)) == ("2026-11-29", 2)  # after the first batch's 2 rows
    assert _append(events, 1, _t(29)) is None  # the agent sent it again after a reconnect
    assert _append(events, 3, _t(29)) is None
    assert [r["_seq"] for r in events.read_day(CLIENT, ART, "2026-11-29", 2, 2)] == [3, 4]
    rows = events.read(CLIENT, ART, _t(29, 0), _t(30, 0), limit=100)
    assert [r["_seq"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == {"n": 1, "label": "row 1", "_seq": 1, "_time": _t(29), "_source": ""}


def test_a_time_range_reads_only_its_days_and_rows(
    events: EventFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    for seq, when in ((1, _t(27, 10)), (3, _t(28, 10)), (5, _t(28, 20)), (7, _t(29, 10))):
        _append(events, seq, when)
    folder = events.root / CLIENT
    assert sorted(p.name for p in folder.glob("*/*.jsonl")) == [
        "2026-11-27.jsonl",
        "2026-11-28.jsonl",
        "2026-11-29.jsonl",
    ]
    day28 = events.read(CLIENT, ART, _t(28, 0), _t(29, 0), limit=100)
    assert [r["_seq"] for r in day28] == [3, 4, 5, 6]
    evening = events.read(CLIENT, ART, _t(28, 15), _t(29, 11), limit=100)
    assert [r["_seq"] for r in evening] == [5, 6, 7, 8]
    assert [r["_seq"] for r in events.read(CLIENT, ART, 0, NOW, offset=3, limit=2)] == [4, 5]
    assert events.artifacts(CLIENT) == [ART]


def test_a_wrong_agent_clock_files_under_the_nearest_allowed_day(events: EventFiles) -> None:
    assert events.filed_under(_t(29), NOW) == "2026-11-29"
    assert events.filed_under(0.0, NOW) == "2026-10-31"  # 30 days back at most
    assert events.filed_under(_t(30) + 90 * 86400, NOW) == "2026-12-01"  # a day ahead at most


def test_expiry_removes_days_past_retention(
    events: EventFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.time", lambda: _t(5))
    _append(events, 1, _t(5))
    monkeypatch.setattr("time.time", lambda: _t(29))
    _append(events, 3, _t(29))
    assert events.expire(now=_t(30)) == 0  # 25 days old: kept
    assert events.expire(now=_t(5) + 32 * 86400) == 1  # day 5 is past 30 days (+1 of margin)
    rows = events.read(CLIENT, ART, 0, _t(30), limit=100)
    assert [r["_seq"] for r in rows] == [3, 4]


def test_rows_must_fit_their_columns(events: EventFiles) -> None:
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        events.append(CLIENT, ART, "", 1, NOW, ["a"], [[1, 2]])
    with pytest.raises(ValueError, match="client id"):
        events.append("../etc", ART, "", 1, NOW, ["a"], [[1]])


def test_an_artifact_name_cannot_leave_its_clients_folder(events: EventFiles) -> None:
    """The artifact name comes from the agent: it is sanitised into one folder name."""
    events.append(CLIENT, "../../../etc/x", "", 1, NOW, ["a"], [[1]])
    written = [p for p in events.root.rglob("*") if p.is_file()]
    client_folder = (events.root / CLIENT).resolve()
    assert written and all(client_folder in p.resolve().parents for p in written)
    assert events.artifacts(CLIENT) == ["../../../etc/x"]


def test_a_deleted_clients_events_go_with_it(events: EventFiles) -> None:
    events.append(CLIENT, ART, "", 1, NOW, ["a"], [[1]])
    other = "C.00000000000000bb"
    events.append(other, ART, "", 1, NOW, ["a"], [[1]])
    assert events.remove_client(CLIENT) > 0
    assert not (events.root / CLIENT).exists()
    assert events.read(other, ART, 0, NOW + 1) != []
