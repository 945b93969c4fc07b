"""``events('Artifact', client => …, since => …, until => …)`` over event rows the filestore's
event code stored, per client and day: rows in range with their client and time, only the
days in range opened, and a day still being written read up to its commit record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from peregrine.analysis import AnalysisEngine, QueryFailed, QueryRefused
from peregrine.auth.roles import ANALYZE, READ_RESULTS
from peregrine.filestore import Filestore
from peregrine.filestore.events import EventFiles
from tests.analysis.conftest import Fleet

ANALYST = frozenset({ANALYZE, READ_RESULTS})
STARTS = "Linux.Events.ProcessStart"
DAY1 = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
DAY2 = DAY1 + 86400
DAY3 = DAY2 + 86400


def rows_of(engine: AnalysisEngine, sql: str) -> list[dict[str, Any]]:
    with engine.run(sql, ANALYST) as result:
        return [row for batch in result for row in batch.to_pylist()]


def stored(filestore: Filestore) -> EventFiles:
    return EventFiles(filestore.root, filestore.check_space, retention_days=100_000)


def test_events_in_range_with_client_and_time(
    fleet: Fleet, filestore: Filestore, analysis: AnalysisEngine
) -> None:
    one, two = fleet.client(1, "web-1"), fleet.client(2, "web-2")
    events = stored(filestore)
    columns = ["pid", "name"]
    events.append(one, STARTS, "", 1, DAY1, columns, [[10, "sshd"], [11, "bash"]])
    events.append(one, STARTS, "", 3, DAY2, columns, [[12, "curl"]])
    events.append(two, STARTS, "", 1, DAY2 + 60, columns, [[20, "miner"]])
    events.append(one, STARTS, "", 4, DAY3, columns, [[13, "late"]])
    sql = (
        f"SELECT client_id, hostname, name, event_time FROM events('{STARTS}', "
        f"since => '2026-12-01T00:00:00Z', until => {int(DAY3) - 3600}) ORDER BY name"
    )
    assert rows_of(analysis, sql) == [
        {"client_id": one, "hostname": "web-1", "name": "curl",
         "event_time": datetime.fromtimestamp(DAY2, UTC)},
        {"client_id": two, "hostname": "web-2", "name": "miner",
         "event_time": datetime.fromtimestamp(DAY2 + 60, UTC)},
    ]  # fmt: skip
    only_one = f"SELECT count(*) AS n FROM events('{STARTS}', client => '{one}')"
    assert rows_of(analysis, only_one) == [{"n": 4}]


def test_only_the_days_in_range_are_read(
    fleet: Fleet, filestore: Filestore, analysis: AnalysisEngine
) -> None:
    client = fleet.client(1, "web-1")
    events = stored(filestore)
    events.append(client, STARTS, "", 1, DAY1, ["name"], [["old"]])
    events.append(client, STARTS, "", 2, DAY3, ["name"], [["new"]])
    # Day 1's file made unreadable JSON: a query that opened it would fail.
    [day1] = events.day_stems(client, STARTS, DAY1, DAY1)
    data = day1.with_name(day1.name + ".jsonl")
    data.write_bytes(b"{not json" + b" " * (data.stat().st_size - 9))
    sql = f"SELECT name FROM events('{STARTS}', client => '{client}', since => {int(DAY2)})"
    assert rows_of(analysis, sql) == [{"name": "new"}]
    with pytest.raises(QueryFailed, match=r"(?i)json"):
        rows_of(analysis, f"SELECT name FROM events('{STARTS}', client => '{client}')")


def test_a_day_being_written_is_read_to_its_commit_record(
    fleet: Fleet, filestore: Filestore, analysis: AnalysisEngine
) -> None:
    client = fleet.client(1, "web-1")
    events = stored(filestore)
    events.append(client, STARTS, "", 1, DAY2, ["name"], [["done"]])
    [day] = events.day_stems(client, STARTS, DAY2, DAY2)
    with open(day.with_name(day.name + ".jsonl"), "ab") as torn:
        torn.write(b'{"name": "half')  # a batch mid-write: past the commit record
    sql = f"SELECT name FROM events('{STARTS}', client => '{client}')"
    assert rows_of(analysis, sql) == [{"name": "done"}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("events('X.Y', 'C.0000000000000001')", "by name"),
        ("events('X.Y', client => 'nope')", "not a client id"),
        ("events('X.Y', since => 'yesterday')", "neither epoch seconds nor an ISO 8601"),
        ("events('X.Y', host => 'a')", "by name"),
    ],
)
def test_bad_arguments_say_how_to_call_it(
    analysis: AnalysisEngine, call: str, message: str
) -> None:
    with pytest.raises(QueryRefused, match=message):
        rows_of(analysis, f"SELECT * FROM {call}")


def test_events_of_nobody_is_empty(analysis: AnalysisEngine) -> None:
    assert rows_of(analysis, "SELECT count(*) AS n FROM events('X.Y')") == [{"n": 0}]
