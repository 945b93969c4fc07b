"""Disk full, for real, on a small tmpfs: nothing committed changes, StorageFull is raised, and
the same write succeeds once space returns, with every row stored exactly once."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from peregrine.filestore import Filestore, StorageFull

from .conftest import CLIENT, FLOW

COLUMNS = ["n", "text"]


def rows(start: int, count: int) -> list[list[object]]:
    """Rows of about 200 bytes of JSON each."""
    return [[i, f"{i:08d}" + "x" * 180] for i in range(start, start + count)]


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test (needs root: CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill a disk needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the filesystem, then give back ``leave`` bytes (rounded to pages)."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            handle.truncate(max(0, filler.stat().st_size - leave))
    return filler


def snapshot(store: Filestore) -> dict[str, bytes]:
    flow = store.flow_dir(CLIENT, FLOW)
    return {
        str(p.relative_to(flow)): p.read_bytes() for p in sorted(flow.rglob("*")) if p.is_file()
    }


def numbers(store: Filestore) -> list[int]:
    count = store.row_count(CLIENT, FLOW, "A", "s")
    return [r["n"] for r in store.read_rows(CLIENT, FLOW, "A", "s", limit=count)]


class WithoutFloor(Filestore):
    """No early free-space check, so the write itself hits ENOSPC part-way."""

    def check_space(self, needed: int = 0) -> None:
        return None


def test_enospc_mid_write_rolls_back_and_recovers(small: Path) -> None:
    store = WithoutFloor(small / "fs", min_free_bytes=0)
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 1500))
    before = snapshot(store)
    filler = fill(small, leave=128 * 1024)
    big = rows(1500, 2500)  # about 500 kB: more than is free, so the write fails part-way

    with pytest.raises(StorageFull, match="full"):
        store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, big)
    assert snapshot(store) == before  # same files, same bytes: no partial data, no temp file
    assert store.row_count(CLIENT, FLOW, "A", "s") == 1500
    # A duplicate of a committed batch is still answered while full (so it can be acked).
    assert store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 1500)) == 0

    filler.unlink()
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, big) > 0
    assert numbers(store) == list(range(4000))
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, big) == 0


def test_free_space_floor_refuses_data_until_space_returns(small: Path) -> None:
    store = Filestore(small / "fs", min_free_bytes=512 * 1024)
    store.check_space()
    store.append_rows(CLIENT, FLOW, "A", "s", 1, COLUMNS, rows(0, 100))
    before = snapshot(store)
    filler = fill(small, leave=256 * 1024)

    with pytest.raises(StorageFull, match=r"bytes free.*524288 kept in reserve"):
        store.check_space()
    with pytest.raises(StorageFull):
        store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(100, 100))
    with pytest.raises(StorageFull):
        store.append_logs(CLIENT, FLOW, 3, [{"message": "m"}])
    assert snapshot(store) == before

    filler.unlink()
    store.check_space()
    assert store.append_rows(CLIENT, FLOW, "A", "s", 2, COLUMNS, rows(100, 100)) > 0
    assert numbers(store) == list(range(200))


def test_upload_chunk_on_a_full_disk_keeps_the_offset(small: Path) -> None:
    store = WithoutFloor(small / "fs", min_free_bytes=0)
    data = os.urandom(600 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    store.start_upload(CLIENT, FLOW, "u1", "/big.bin", len(data), digest)
    assert store.write_chunk(CLIENT, FLOW, "u1", 0, data[:100_000]) == 100_000
    filler = fill(small, leave=64 * 1024)

    with pytest.raises(StorageFull):
        store.write_chunk(CLIENT, FLOW, "u1", 100_000, data[100_000:])
    assert store.upload_offset(CLIENT, FLOW, "u1") == 100_000

    filler.unlink()
    assert store.write_chunk(CLIENT, FLOW, "u1", 100_000, data[100_000:]) == len(data)
    record = store.finish_upload(CLIENT, FLOW, "u1")
    with store.open_upload(CLIENT, FLOW, record.stored_name) as handle:
        assert handle.read() == data
    assert (
        json.loads((store.flow_dir(CLIENT, FLOW) / "uploads.records" / "u1.json").read_text())[
            "sha256"
        ]
        == digest
    )
