"""yara_process over real child processes: heap, shared and patched file mappings, regions that
go away, time-outs and limits. Linux only (``/proc/PID/smaps``, ``mem``, ``pagemap``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import QueryContext, QueryLimits, QueryTimeout
from peregrine.plugins import yara_process_scan
from peregrine.plugins.yara_memory import extents, plan_process, zero_page_frame
from peregrine.plugins.yara_scan import compile_rules

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

#: Child programs: each builds its data, says "ready" on stdout, and waits for stdin to close
#: (or for a command line: "unmap").
HEAP = """
import sys
marker = ("PEREGRINE_" + "HEAP_" + sys.argv[1]).encode()
held = [bytearray(marker + b"-%d-" % n) for n in range(int(sys.argv[2]))]
print("ready", flush=True)
sys.stdin.read()
"""
MAP_FILE = """
import mmap, sys
handle = open(sys.argv[1], "rb")
view = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
print("ready", flush=True)
sys.stdin.read()
"""
PATCH_FILE = """
import ctypes, mmap, sys
handle = open(sys.argv[1], "rb")
view = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
patch = ("PEREGRINE_" + "PATCH_" + sys.argv[2]).encode()
view[8192 : 8192 + len(patch)] = patch
address = ctypes.addressof(ctypes.c_char.from_buffer(view))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(address, len(view), mmap.PROT_READ) == 0
print("ready", flush=True)
sys.stdin.read()
"""
UNMAP = """
import ctypes, mmap, sys
region = mmap.mmap(-1, 1 << 20)
marker = ("PEREGRINE_" + "GONE_" + sys.argv[1]).encode()
region[4096 : 4096 + len(marker)] = marker
print("ready", flush=True)
print(ctypes.addressof(ctypes.c_char.from_buffer(region)), flush=True)
sys.stdin.readline()
region.close()
print("unmapped", flush=True)
sys.stdin.read()
"""
ONLY_READ = """
import ctypes, mmap, sys
region = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
total = sum(region[offset] for offset in range(0, len(region), 4096))
region[32 << 20] = 1  # one page written: the rest was only read
print("ready", flush=True)
print(ctypes.addressof(ctypes.c_char.from_buffer(region)), flush=True)
sys.stdin.read()
"""
SLOW = """
import sys
held = bytearray(b"a" * (8 << 20))
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a child program; it is ready when this returns, and killed after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(program: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", program, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()


def mapping_of(pid: int, path: Path) -> tuple[int, int]:
    """(start, end) of the first mapping of ``path`` in ``pid``."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = line.split()[0].split("-")
            return int(start, 16), int(end, 16)
    raise AssertionError(f"{path} is not mapped in {pid}")


def rule_for(name: str, text: str) -> str:
    return f'rule {name} {{ strings: $m = "{text}" condition: $m }}'


def scan(engine: Any, sql: str, params: Any, **limits: Any) -> tuple[list[dict[str, Any]], Any]:
    ctx = QueryContext(limits=QueryLimits(**limits))
    result = engine.execute(sql, params, ctx=ctx)
    names = [c.name for c in result.columns]
    rows = [dict(zip(names, row, strict=True)) for row in result]
    return rows, ctx


def test_a_marker_in_a_child_heap_is_found_at_its_address(query, child):
    token = uuid.uuid4().hex
    proc = child(HEAP, token, "1")
    marker = f"PEREGRINE_HEAP_{token}"
    rows = query(
        "SELECT pid, rule, strings, regions FROM yara_process(?, ?)",
        [rule_for("heap", marker), proc.pid],
    )
    assert [(r["pid"], r["rule"]) for r in rows] == [(proc.pid, "heap")]
    found = json.loads(rows[0]["strings"])
    assert found
    regions = json.loads(rows[0]["regions"])
    assert not any(r["shared"] for r in regions)
    with open(f"/proc/{proc.pid}/mem", "rb") as mem:  # each offset is the marker's address
        for string in found:
            assert string["data"] == marker
            assert any(r["address"] <= string["offset"] < r["address"] + r["size"] for r in regions)
            mem.seek(string["offset"])
            assert mem.read(len(marker)).decode() == marker


def test_a_shared_file_mapping_is_scanned_once_and_reported_for_each_process(
    engine, child, tmp_path
):
    marker = "PEREGRINE_SHARED_" + uuid.uuid4().hex
    path = tmp_path / "library.bin"
    path.write_bytes(b"\x01" * 5000 + marker.encode() + b"\x02" * 20000)
    first, second = child(MAP_FILE, str(path)), child(MAP_FILE, str(path))
    rows, ctx = scan(
        engine,
        "WITH procs(pid) AS (VALUES (?), (?)) "
        "SELECT p.pid, y.strings, y.regions FROM procs p "
        "JOIN yara_process y ON y.rules = ? AND y.pid = p.pid",
        [first.pid, second.pid, rule_for("shared", marker)],
    )
    assert sorted(r["pid"] for r in rows) == sorted([first.pid, second.pid])
    for row in rows:
        start, end = mapping_of(row["pid"], path)
        assert [s["offset"] for s in json.loads(row["strings"])] == [start + 5000]
        assert json.loads(row["regions"]) == [
            {
                "address": start,
                "size": end - start,
                "perms": "r--s",
                "path": str(path),
                "shared": True,
            }
        ]
    stats = yara_process_scan.stats(ctx)
    assert stats.processes == 2
    assert stats.regions_shared >= 1  # the second process's mapping was not read again


def test_a_library_patched_in_one_process_is_scanned_for_that_process(engine, child, tmp_path):
    token = uuid.uuid4().hex
    path = tmp_path / "patched.bin"
    path.write_bytes(b"\x03" * 16384)
    clean = child(MAP_FILE, str(path))
    patched = child(PATCH_FILE, str(path), token)
    rows, _ = scan(
        engine,
        "WITH procs(pid) AS (VALUES (?), (?)) "
        "SELECT p.pid, y.strings FROM procs p "
        "JOIN yara_process y ON y.rules = ? AND y.pid = p.pid",
        [clean.pid, patched.pid, rule_for("patched", f"PEREGRINE_PATCH_{token}")],
    )
    assert {r["pid"] for r in rows} == {patched.pid}
    start, _ = mapping_of(patched.pid, path)
    offsets = [s["offset"] for s in json.loads(rows[0]["strings"])]
    assert start + 8192 in offsets  # found in the mapping, not only in the child's heap


def test_a_region_unmapped_after_the_plan_is_skipped(child):
    token = uuid.uuid4().hex
    proc = child(UNMAP, token)
    assert proc.stdin is not None and proc.stdout is not None
    address = int(proc.stdout.readline())
    plan = plan_process(proc.pid)
    assert plan is not None
    assert any(r.start <= address < r.end for r in plan.regions)
    proc.stdin.write("unmap\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "unmapped"
    compiled = compile_rules("yara_process", rule_for("gone", f"PEREGRINE_GONE_{token}"))
    deadline = time.monotonic() + 30
    found = [
        yara_process_scan.scan_region(compiled, proc.pid, region, deadline, 10, threading.Event())
        for region in plan.regions
    ]
    assert all(result.problem is None and not result.timed_out for result in found)
    addresses = [
        region.start + string[1]
        for region, result in zip(plan.regions, found, strict=True)
        for hit in result.hits
        for string in hit.strings
    ]
    assert addresses  # the marker's other copies (the child's heap) are still found
    assert not [a for a in addresses if address <= a < address + (1 << 20)]  # not the gone one
    assert sum(result.scanned for result in found) > 0  # the other regions were read


def test_a_process_that_exits_mid_query_is_a_warning(engine, child):
    token = uuid.uuid4().hex
    proc = child(HEAP, token, "1")
    proc.kill()
    proc.wait()
    rows, ctx = scan(engine, "SELECT * FROM yara_process(?, ?)", [rule_for("x", token), proc.pid])
    assert rows == []
    assert any(f"process {proc.pid} does not exist" in w for w in ctx.warnings)


def test_the_per_scan_time_out_holds(engine, child):
    proc = child(SLOW)
    rules = "rule slow { strings: $a = /a.{0,200}b/ condition: $a }"
    # A full scan of 8 MiB of 'a' with this rule takes minutes: the warning says it was cut.
    _, ctx = scan(engine, "SELECT * FROM yara_process(?, ?, 1)", [rules, proc.pid])
    assert any(f"scan of process {proc.pid} timed out after 1 s" in w for w in ctx.warnings)


def test_the_query_time_out_holds_during_a_scan(engine, child):
    proc = child(SLOW)
    rules = "rule slow { strings: $a = /a.{0,200}b/ condition: $a }"
    with pytest.raises(QueryTimeout):
        scan(engine, "SELECT * FROM yara_process(?, ?, 600)", [rules, proc.pid], timeout=1)


def test_max_matches_caps_strings_across_regions(query, child):
    token = uuid.uuid4().hex
    proc = child(HEAP, token, "50")
    rules = rule_for("many", f"PEREGRINE_HEAP_{token}")
    capped = query("SELECT strings FROM yara_process(?, ?, 60, 3)", [rules, proc.pid])
    assert len(json.loads(capped[0]["strings"])) == 3
    full = query("SELECT strings FROM yara_process(?, ?, 60, 10000)", [rules, proc.pid])
    assert len(json.loads(full[0]["strings"])) >= 50  # each bytearray, and the copies made


def test_whole_process_uses_libyara_and_still_finds_the_marker(query, child):
    token = uuid.uuid4().hex
    proc = child(HEAP, token, "1")
    rows = query(
        "SELECT rule, regions FROM yara_process(?, ?, 60, 100, 1)",
        [rule_for("whole", f"PEREGRINE_HEAP_{token}"), proc.pid],
    )
    assert [(r["rule"], json.loads(r["regions"])) for r in rows] == [("whole", [])]


def test_scanning_this_process_leaves_out_the_read_buffers(query, child):
    token = uuid.uuid4().hex
    proc = child(HEAP, token, "1")
    query("SELECT rule FROM yara_process(?, ?)", [rule_for("warm", token), proc.pid])
    buffers = list(yara_process_scan._own_buffers)
    assert buffers
    plan = plan_process(os.getpid())
    assert plan is not None
    regions = yara_process_scan._without_buffers(plan.regions)
    for region in regions:
        for low, high in buffers:
            assert region.end <= low or region.start >= high


@pytest.mark.skipif(zero_page_frame() is None, reason="pagemap hides frame numbers (not root)")
def test_memory_only_ever_read_is_the_zero_page_and_is_not_read(child):
    proc = child(ONLY_READ)
    assert proc.stdout is not None
    address = int(proc.stdout.readline())
    plan = plan_process(proc.pid)
    assert plan is not None
    (region,) = [r for r in plan.regions if r.start <= address < r.end]
    assert region.end - address >= 64 << 20  # 64 MiB mapped, every page of it read ...
    written = address + (32 << 20)
    inside = [
        (start, end)
        for start, end in extents(proc.pid, region)
        if start < address + (64 << 20) and end > address
    ]
    assert [(s, e) for s, e in inside if s <= written < e]  # ... the page written is read,
    assert sum(e - s for s, e in inside) <= 1 << 20  # the zero page elsewhere is not
