"""`peregrine artifacts watch` as a user runs it: a real subprocess following a real log. Slow:
starting the command loads every artifact (the ForensicArtifacts too), 5-10 s on a busy box."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest


def _watch(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "peregrine", "artifacts", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "PEREGRINE_STATE_DIR": str(cwd / "state")},
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_watch_prints_an_event_artifacts_rows_as_they_happen(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("ERROR before the watch: not new\n")
    proc = _watch(
        "Generic.Events.LogLines",
        "-p",
        f"Paths={json.dumps([str(log)])}",
        "-p",
        "LineRegex=ERROR",
        "--max-rows",
        "1",
        "--seconds",
        "60",
        cwd=tmp_path,
    )
    done = threading.Event()

    def keep_logging() -> None:  # until the watcher is up and has seen one
        while not done.wait(0.5):
            with open(log, "a") as f:
                f.write("INFO fine\nERROR disk full\n")

    writer = threading.Thread(target=keep_logging)
    writer.start()
    try:
        out, errors = proc.communicate(timeout=80)
    finally:
        done.set()
        writer.join()
    assert proc.returncode == 0, errors
    (line,) = out.splitlines()
    row = json.loads(line)
    assert row["line"] == "ERROR disk full" and row["path"] == str(log)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_watch_refuses_an_artifact_that_is_not_an_event_one(tmp_path: Path) -> None:
    proc = _watch("Linux.Sys.Users", cwd=tmp_path)
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "not an event artifact (CLIENT_EVENT): collect it instead" in " ".join(errors.split())
