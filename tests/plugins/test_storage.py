"""mounts() and disks(): checked against the kernel's own view of this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest


def test_root_is_mounted_with_its_usage(query):
    rows = query("SELECT * FROM mounts() WHERE mountpoint = '/'")
    assert rows, "/ must be among the mounts"
    root = rows[-1]  # the last mount on / is the one in effect
    part = next(p for p in reversed(psutil.disk_partitions(all=True)) if p.mountpoint == "/")
    assert root["device"] == part.device
    assert root["fstype"] == part.fstype
    assert root["options"] == part.opts
    usage = shutil.disk_usage("/")
    assert root["total"] == usage.total
    assert root["free"] == pytest.approx(usage.free, rel=0.01)
    assert root["used"] == pytest.approx(usage.used, rel=0.01)
    assert root["inodes_total"] == os.statvfs("/").f_files


def test_mounts_are_the_kernels_list(query):
    rows = query("SELECT mountpoint FROM mounts()")
    assert [r["mountpoint"] for r in rows] == [
        p.mountpoint for p in psutil.disk_partitions(all=True)
    ]


def test_physical_only_is_a_subset(query):
    every = {(r["device"], r["mountpoint"]) for r in query("SELECT * FROM mounts()")}
    physical = {(r["device"], r["mountpoint"]) for r in query("SELECT * FROM mounts(1)")}
    assert physical <= every
    assert physical == {(p.device, p.mountpoint) for p in psutil.disk_partitions(all=False)}


@pytest.fixture
def readonly_tmpfs(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "peregrine-test", str(target)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_a_new_readonly_mount_appears(query, readonly_tmpfs):
    rows = query("SELECT * FROM mounts() WHERE mountpoint = ?", (str(readonly_tmpfs),))
    assert len(rows) == 1
    row = rows[0]
    assert row["device"] == "peregrine-test"
    assert row["fstype"] == "tmpfs"
    assert row["read_only"] == 1
    assert row["total"] == 1024 * 1024
    assert row["used"] == 0


@pytest.mark.skipif(not Path("/sys/block").is_dir(), reason="no sysfs here")
def test_disks_are_sys_block(query):
    rows = {r["name"]: r for r in query("SELECT * FROM disks()")}
    assert set(rows) == set(os.listdir("/sys/block"))
    for name, row in rows.items():
        dev = Path("/sys/block") / name
        assert row["device"] == f"/dev/{name}"
        assert row["size"] == int((dev / "size").read_text()) * 512
        assert row["read_only"] == int((dev / "ro").read_text())
        assert row["removable"] == int((dev / "removable").read_text())
        assert row["virtual"] == int("/devices/virtual/" in str(dev.resolve()))
        parts = [p.name for p in dev.iterdir() if (p / "partition").exists()]
        assert sorted(p["name"] for p in json.loads(row["partitions"])) == sorted(parts)


@pytest.mark.skipif(not Path("/sys/block").is_dir(), reason="no sysfs here")
def test_disk_io_counters_come_from_the_kernel(query):
    io = psutil.disk_io_counters(perdisk=True)
    rows = query("SELECT name, read_count, read_bytes FROM disks()")
    counted = [r for r in rows if r["name"] in io]
    assert counted
    for r in counted:
        assert r["read_count"] >= io[r["name"]].read_count
        assert r["read_bytes"] >= io[r["name"]].read_bytes


def test_partitions_are_read_from_a_sysfs_disk_node(tmp_path):
    from peregrine.plugins.storage import _partitions

    disk = tmp_path / "sda"
    for name, number, start, sectors in (("sda1", 1, 2048, 1024), ("sda2", 2, 4096, 8192)):
        (disk / name).mkdir(parents=True)
        (disk / name / "partition").write_text(f"{number}\n")
        (disk / name / "start").write_text(f"{start}\n")
        (disk / name / "size").write_text(f"{sectors}\n")
    (disk / "queue").mkdir()  # not a partition: no 'partition' file
    assert _partitions(disk) == [
        {"name": "sda1", "number": 1, "start": 2048, "size": 1024 * 512},
        {"name": "sda2", "number": 2, "start": 4096, "size": 8192 * 512},
    ]
