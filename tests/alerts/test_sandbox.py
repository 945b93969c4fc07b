"""A rule's condition runs in a sandbox: it reads the batch's rows and calls built-in
functions, nothing else, and a runaway condition is stopped at its time limit."""

from __future__ import annotations

import time

import pytest

from peregrine.alerts.matcher import RULE_TIME_LIMIT, Matcher
from peregrine.alerts.rules import Rule, RuleError, rule_from_dict

COLUMNS = ("pid", "exe")


def rule(condition: str) -> Rule:
    return rule_from_dict({"rule_id": "T.Sandbox", "artifacts": ["A"], "condition": condition})


@pytest.mark.parametrize(
    "condition",
    [
        "1); ATTACH DATABASE '/tmp/x.db' AS x; --",
        "1); DELETE FROM events; --",
        "1); PRAGMA writable_schema = 1; --",
        "load_extension('/tmp/evil.so') IS NULL",
        "(SELECT count(*) FROM sqlite_master) >= 0",
        "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
        "SELECT max(n) FROM c) > 0",
        "readfile('/etc/passwd') IS NOT NULL",
    ],
)
def test_a_condition_that_reaches_beyond_the_row_is_refused(condition: str) -> None:
    matcher = Matcher()
    with pytest.raises(RuleError) as refused:
        matcher.check(rule(condition), COLUMNS)
    assert refused.value.field == "condition"


def test_bad_sql_is_refused_with_its_position() -> None:
    with pytest.raises(RuleError) as refused:
        Matcher().check(rule("exe LIKE '/tmp/%' AND AND pid > 1"), COLUMNS)
    assert refused.value.position == 22  # the second AND
    assert """at position 22 ("e LIKE '/tmp/%' AND " ⟵ here)""" in str(refused.value)
    with pytest.raises(RuleError) as unfinished:
        Matcher().check(rule("exe LIKE '/tmp/%' AND ("), COLUMNS)
    assert unfinished.value.position == len("exe LIKE '/tmp/%' AND (")


def test_a_runaway_condition_is_stopped_at_its_limit_and_the_others_still_match() -> None:
    rows = [{"pid": n, "exe": f"/tmp/{n}"} for n in range(400)]
    meta = {"client_id": "C.1", "artifact": "A", "source": "", "first_seq": 0, "received": 0.0}
    heavy = rule("(SELECT count(*) FROM events a, events b, events c WHERE a.pid > b.pid) > 0")
    light = rule_from_dict({"rule_id": "T.Light", "artifacts": ["A"], "condition": "pid = 7"})
    started = time.monotonic()
    found, failed = Matcher().match(meta, rows, [heavy, light])
    elapsed = time.monotonic() - started
    assert "ran past its limit" in str(failed["T.Sandbox"])
    assert found == {"T.Light": [7]}
    assert elapsed < RULE_TIME_LIMIT + 1.0
