"""Heap pages freed by bursts of connections go back to the system (``server/heap.py``)."""

from __future__ import annotations

import asyncio
import ctypes
import os
from pathlib import Path

import pytest

from peregrine.server.heap import HeapTrimmer
from tests.server.harness import (
    agent_config,
    make_deployment,
    running_agent,
    running_server,
    wait_until,
)

CHUNKS = 20_000
CHUNK = 4096


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_trim_comes_after_enough_connections_and_gives_freed_pages_back() -> None:
    """80 MB freed in the middle of the heap (a block still in use after it) stays resident
    until the trimmer has seen its connections, then goes back to the system."""
    trimmer = HeapTrimmer(after=30)
    if not trimmer.available:
        pytest.skip("no glibc malloc_trim here")
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(CHUNK) for _ in range(CHUNKS)]
    for chunk in chunks:
        ctypes.memset(chunk, 1, CHUNK)  # resident
    keeper = libc.malloc(CHUNK)  # the heap's top stays in use: only a trim can give back
    try:
        for chunk in chunks:
            libc.free(chunk)
        for _ in range(29):
            trimmer.note()
        resident = rss()
        assert not trimmer.trim_if_due()  # 29 connections, and still coming: not yet
        assert rss() > resident - CHUNKS * CHUNK // 2
        trimmer.note()
        assert trimmer.trim_if_due()
        assert rss() < resident - CHUNKS * CHUNK // 2
        assert not trimmer.trim_if_due()  # counted again from zero
        assert trimmer.trims == 1
    finally:
        libc.free(keeper)


def test_a_burst_that_ended_is_trimmed_below_the_count() -> None:
    """Three connections (a tenth of 30) and then none for a check: trimmed; two: not."""
    trimmer = HeapTrimmer(after=30)
    if not trimmer.available:
        pytest.skip("no glibc malloc_trim here")
    for _ in range(3):
        trimmer.note()
    assert not trimmer.trim_if_due()  # they were still coming at this check
    assert trimmer.trim_if_due()  # none since: the burst is over
    trimmer.note()
    trimmer.note()
    assert not trimmer.trim_if_due()
    assert not trimmer.trim_if_due()  # over, but two are not worth a trim
    assert trimmer.trims == 1


def test_the_frontend_counts_agents_coming_and_going(tmp_path: Path) -> None:
    deployment = make_deployment(tmp_path / "deploy")

    async def scenario() -> tuple[int, int]:
        async with running_server(deployment) as server:
            async with running_agent(agent_config(deployment, tmp_path / "agent")):
                connected = server.heap.changes
            await wait_until(lambda: server.heap.changes == 2, 20)
            return connected, server.heap.changes

    assert asyncio.run(scenario()) == (1, 2)
