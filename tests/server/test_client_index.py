"""The in-memory client index: the search operators, and hunt matching."""

from __future__ import annotations

import pytest

from peregrine.server.client_index import ClientIndex, SearchError

NOW = 1_800_000_000.0


@pytest.fixture
def index() -> ClientIndex:
    index = ClientIndex()
    index.update("C.00000000000000a1", ["prod", "web"], "linux", "web-01", ["10.0.0.1"], NOW - 60)
    index.update("C.00000000000000a2", ["prod"], "windows", "DC-01", ["10.0.1.5"], NOW - 7200)
    index.update("C.00000000000000b3", [], "darwin", "laptop-ann", ["192.168.1.9"], NOW - 86400 * 3)
    return index


def search(index: ClientIndex, query: str, online: tuple[str, ...] = ()) -> list[str]:
    _total, found = index.search(query, online=online, now=NOW)
    return [c.hostname or "" for c in found]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["DC-01", "laptop-ann", "web-01"]),
        ("*", ["DC-01", "laptop-ann", "web-01"]),
        ("host:web-*", ["web-01"]),
        ("host:dc-01", ["DC-01"]),  # case-insensitive
        ("label:prod", ["DC-01", "web-01"]),
        ("label:prod os:linux", ["web-01"]),
        ("os:windows", ["DC-01"]),
        ("ip:10.0.*", ["DC-01", "web-01"]),
        ("ip:192.168.1.9", ["laptop-ann"]),
        ("client:C.*b3", ["laptop-ann"]),
        ("recent:15m", ["web-01"]),
        ("recent:3h", ["DC-01", "web-01"]),
        ("laptop", ["laptop-ann"]),  # free text
        ("prod web", ["web-01"]),
        ('"laptop-ann"', ["laptop-ann"]),
        ("online:true", ["web-01"]),
        ("online:false label:prod", ["DC-01"]),
    ],
)
def test_search_operators(index: ClientIndex, query: str, expected: list[str]) -> None:
    assert search(index, query, online=("C.00000000000000a1",)) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("recent:soon", "30m, 2h or 1d"),
        ("host:", "e.g. host:web-"),
        ('"open', "quotes"),
        ("online:maybe", "online:true"),
    ],
)
def test_bad_searches_say_how_to_write_them(index: ClientIndex, query: str, message: str) -> None:
    with pytest.raises(SearchError, match=message):
        index.search(query)


def test_paging_and_totals(index: ClientIndex) -> None:
    total, page = index.search("", limit=2, offset=1)
    assert total == 3 and [c.hostname for c in page] == ["laptop-ann", "web-01"]
