"""``yara_process``'s scan: a process's regions matched one by one, on every core.

Each region (a mapping, or a :data:`~yara_memory.CHUNK` of a larger one) is its own YARA scan
(``match(data=...)``), so a rule's condition is evaluated within one region; string offsets
are reported as addresses. yara-python releases the GIL while it scans, so a pool of threads
(one per core) scans a process's regions side by side. A region other processes share (same
file bytes or shared memory: ``Region.key``) is scanned once per query and rules; every
process mapping it gets the rows, at its own addresses.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import yara

from peregrine.engine.context import QueryContext
from peregrine.plugins.yara_memory import (
    CHUNK,
    Region,
    chunks,
    extents,
    nonzero_stretches,
    plan_process,
    read_into,
)

#: One match of a string: identifier, offset from the region's start, bytes, length.
StringHit = tuple[str, int, bytes, int]
_STATE = "yara_process"
#: Scanning threads at most (one per core below that): each holds a CHUNK-sized buffer.
MAX_THREADS = 4
_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: (start, end) of every scanning thread's read buffer in this process.
_own_buffers: list[tuple[int, int]] = []


@dataclass
class RuleHit:
    """A rule whose condition held in one region, with (at most max_matches of) its strings."""

    rule: str
    namespace: str
    tags: list[str]
    meta: dict[str, Any]
    strings: list[StringHit]


@dataclass
class RegionScan:
    """What scanning one region found; ``problem`` says why it stopped early, if it did."""

    hits: list[RuleHit] = field(default_factory=list)
    scanned: int = 0
    timed_out: bool = False
    problem: str | None = None
    #: The matches of the last piece scanned.
    last: list[Any] = field(default_factory=list)


@dataclass
class ScanStats:
    """Counts over one query, for benchmarks and tests: what was read and what was shared."""

    processes: int = 0
    regions: int = 0
    regions_skipped: int = 0
    regions_shared: int = 0
    bytes_scanned: int = 0


@dataclass
class _QueryState:
    #: (rules, max_matches, Region.key) -> the one scan of a shared region.
    shared: dict[tuple[str, int, tuple[int, int, int, int]], Future[RegionScan]] = field(
        default_factory=dict
    )
    stats: ScanStats = field(default_factory=ScanStats)


def stats(ctx: QueryContext) -> ScanStats:
    """This query's counts so far."""
    return _state(ctx).stats


def _state(ctx: QueryContext) -> _QueryState:
    state = ctx.plugin_state.get(_STATE)
    if state is None:
        state = ctx.plugin_state[_STATE] = _QueryState()
    return state


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            threads = min(MAX_THREADS, max(2, cores or 2))
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="yara")
        return _pool


def _buffer() -> mmap.mmap:
    """This thread's read buffer: one per scanning thread, so memory stays threads times CHUNK.

    A mapping of its own, whose address is remembered: scanning this very process leaves the
    buffers out (they hold other processes' bytes, which would be reported as this one's)."""
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = mmap.mmap(-1, CHUNK)
        start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        _own_buffers.append((start, start + CHUNK))
    return buffer


def _without_buffers(regions: list[Region]) -> list[Region]:
    """This process's regions minus the scanning threads' buffers."""
    out: list[Region] = []
    for region in regions:
        pieces = [(region.start, region.end)]
        for low, high in _own_buffers:
            pieces = [
                part
                for start, end in pieces
                for part in ((start, min(end, low)), (max(start, high), end))
                if part[0] < part[1]
            ]
        out.extend(replace(region, start=start, end=end) for start, end in pieces)
    return out


def scan_region(
    compiled: Any, pid: int, region: Region, deadline: float, limit: int, stop: threading.Event
) -> RegionScan:
    """Read one region of ``pid`` chunk by chunk and match what is not zeros in each."""
    out = RegionScan()
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError as exc:
        out.problem = exc.strerror or str(exc)
        return out
    try:
        buffer = _buffer()
        for start, end in extents(pid, region):
            for address, length in chunks(start, end):
                count = read_into(fd, buffer, address, length)
                out.scanned += count
                for low, high in nonzero_stretches(buffer, count):
                    if not _match(compiled, buffer, low, high, deadline, stop, out):
                        return out
                    _collect(out.hits, out.last, address + low - region.start, limit)
                if count < length:
                    break  # the rest cannot be read (unmapped since the plan, or I/O memory)
    finally:
        os.close(fd)
    return out


def _match(
    compiled: Any,
    buffer: mmap.mmap,
    low: int,
    high: int,
    deadline: float,
    stop: threading.Event,
    out: RegionScan,
) -> bool:
    """Match ``buffer[low:high]`` into ``out.last``; False when the scan must stop here."""
    left = deadline - time.monotonic()
    if stop.is_set() or left <= 0:
        out.timed_out = not stop.is_set()
        return False
    try:
        out.last = compiled.match(data=memoryview(buffer)[low:high], timeout=math.ceil(left))
    except yara.TimeoutError:
        out.timed_out = True
        return False
    except yara.Error as exc:
        out.problem = str(exc)
        return False
    return True


def _collect(hits: list[RuleHit], matches: Any, base: int, limit: int) -> None:
    for match in matches:
        strings: list[StringHit] = []
        for string in match.strings:
            for instance in string.instances:
                if len(strings) >= limit:
                    break
                strings.append(
                    (
                        string.identifier,
                        base + instance.offset,
                        instance.matched_data,
                        instance.matched_length,
                    )
                )
        hits.append(
            RuleHit(match.rule, match.namespace, list(match.tags), dict(match.meta), strings)
        )


def scan_process(
    ctx: QueryContext,
    compiled: Any,
    rules: str,
    pid: int,
    timeout: float,
    limit: int,
) -> tuple[list[tuple[Region, RegionScan]], list[str]] | None:
    """Scan every region of ``pid`` worth scanning; None when its memory map cannot be read.

    Returns each region with what it found, and the problems met (for warnings)."""
    plan = plan_process(pid)
    if plan is None:
        return None
    if pid == os.getpid():
        plan.regions = _without_buffers(plan.regions)
    state = _state(ctx)
    state.stats.processes += 1
    state.stats.regions_skipped += plan.skipped
    deadline = time.monotonic() + timeout
    if ctx.deadline is not None:
        deadline = min(deadline, ctx.deadline)
    stop = threading.Event()
    pool = _executor()
    futures: list[tuple[Region, Future[RegionScan]]] = []
    owned: set[int] = set()  # the futures this process submitted (the others were shared)
    for region in plan.regions:
        state.stats.regions += 1
        shared_key = (rules, limit, region.key) if region.key is not None else None
        future = state.shared.get(shared_key) if shared_key is not None else None
        if future is not None:
            state.stats.regions_shared += 1
        else:
            future = pool.submit(scan_region, compiled, pid, region, deadline, limit, stop)
            owned.add(id(future))
            if shared_key is not None:
                state.shared[shared_key] = future
        futures.append((region, future))
    try:
        _wait(ctx, [future for _, future in futures])
    except BaseException:
        stop.set()
        for _, future in futures:
            future.cancel()
        raise
    results: list[tuple[Region, RegionScan]] = []
    problems: list[str] = []
    for region, future in futures:
        result = future.result()
        results.append((region, result))
        if id(future) in owned:
            state.stats.bytes_scanned += result.scanned
        if region.key is not None and (result.timed_out or result.problem):
            state.shared.pop((rules, limit, region.key), None)  # incomplete: scan it again
        if result.timed_out:
            problems.append(f"scan of process {pid} timed out after {timeout:g} s")
        elif result.problem:
            problems.append(f"cannot read process {pid}: {result.problem}")  # once per cause
    return results, list(dict.fromkeys(problems))


def _wait(ctx: QueryContext, futures: list[Future[RegionScan]]) -> None:
    """Wait for the region scans, stopping at once when the query is cancelled or times out."""
    pending = set(futures)
    while pending:
        ctx.check()
        _, pending = wait(pending, timeout=0.1)


def rows(results: list[tuple[Region, RegionScan]], limit: int) -> Iterator[dict[str, Any]]:
    """One row per rule that matched in any region: strings at their addresses."""
    by_rule: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[str, str, str, int]] = set()
    for region, result in results:
        for hit in result.hits:
            row = by_rule.get((hit.namespace, hit.rule))
            if row is None:
                row = by_rule[(hit.namespace, hit.rule)] = {
                    "rule": hit.rule,
                    "namespace": hit.namespace,
                    "tags": hit.tags,
                    "meta": hit.meta,
                    "strings": [],
                    "regions": [],
                }
            if len(row["regions"]) < limit:
                row["regions"].append(
                    {
                        "address": region.start,
                        "size": region.size,
                        "perms": region.perms,
                        "path": region.path,
                        "shared": region.key is not None,
                    }
                )
            for identifier, offset, data, length in hit.strings:
                address = region.start + offset
                if (hit.namespace, hit.rule, identifier, address) in seen:
                    continue  # found again in the overlap of two chunks
                seen.add((hit.namespace, hit.rule, identifier, address))
                if len(row["strings"]) < limit:
                    row["strings"].append((identifier, address, data, length))
    yield from by_rule.values()
