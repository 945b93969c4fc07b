"""The leader's loops during a datastore outage: one warning when it goes, one when it is
back, whatever the number of failed passes; any other error keeps its traceback. (The same
with a real PostgreSQL stopped under a cluster: ``tests/cluster/test_faults_services.py``.)"""

from __future__ import annotations

import logging

import pytest

from peregrine.datastore import DatastoreUnavailable
from peregrine.services.outage import OutageLog

log = logging.getLogger("tests.outage")


def test_an_outage_is_one_line_down_and_one_back_and_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(log, "hunt manager")
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(2):  # two outages
            outage.passed()
            for _ in range(5):
                outage.failed(DatastoreUnavailable("the datastore (db) does not answer"))
            outage.passed()
            outage.passed()
        outage.failed(ValueError("a bug"))
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    down = ("WARNING", "hunt manager: the datastore (db) does not answer; its passes wait "
            "until it answers again", False)  # fmt: skip
    back = ("WARNING", "hunt manager: the datastore answers again; passes resume", False)
    assert lines == [down, back, down, back, ("ERROR", "hunt manager pass failed", True)]
