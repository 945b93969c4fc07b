"""A writer killed with SIGKILL at an arbitrary point, then the agent's resend: every row once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from peregrine.filestore import Filestore

from .conftest import CLIENT, FLOW

BATCHES = 400
PER_BATCH = 250

WRITER = f"""
import sys
from pathlib import Path
from peregrine.filestore import Filestore
store = Filestore(Path(sys.argv[1]), min_free_bytes=0)
for seq in range(1, {BATCHES} + 1):
    start = (seq - 1) * {PER_BATCH}
    rows = [[i, "x" * 150] for i in range(start, start + {PER_BATCH})]
    store.append_rows("{CLIENT}", "{FLOW}", "A", "s", seq, ["n", "pad"], rows)
    if seq == 3:
        print("started", flush=True)
"""


def test_sigkill_mid_stream_then_resend(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    for delay in (0.05, 0.2):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store = Filestore(root, min_free_bytes=0)
        committed = store.row_count(CLIENT, FLOW, "A", "s")
        assert committed % PER_BATCH == 0  # only whole batches are ever visible
        assert 3 * PER_BATCH <= committed < BATCHES * PER_BATCH, "killed too late to test"
    # The agent resends everything it has not seen acknowledged (here: all of it).
    for seq in range(1, BATCHES + 1):
        start = (seq - 1) * PER_BATCH
        rows = [[i, "x" * 150] for i in range(start, start + PER_BATCH)]
        store.append_rows(CLIENT, FLOW, "A", "s", seq, ["n", "pad"], rows)
    total = BATCHES * PER_BATCH
    assert store.row_count(CLIENT, FLOW, "A", "s") == total
    got = store.read_rows(CLIENT, FLOW, "A", "s", limit=total)
    assert [r["n"] for r in got] == list(range(total))
