"""The in-memory client index: the search operators, and hunt matching."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from pathlib import Path

import httpx
import pytest

from peregrine.agent.identity import Identity
from peregrine.services.client_index import ClientIndex, SearchError
from tests.server.harness import RawAgent, make_deployment, running_server, wait_until

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


def test_clients_that_leave_right_after_their_welcome_are_searchable(tmp_path: Path) -> None:
    """Issue 11 item 12: agents that enroll and disconnect at once (before checking in) were
    missing from GET /clients. Every enrolled client is found, through the real API."""
    deployment = make_deployment(tmp_path / "deploy")
    identities = [Identity.generate() for _ in range(40)]

    async def enroll_and_leave(identity: Identity) -> None:
        async with RawAgent(deployment, identity):
            pass  # welcomed, then gone before anything else

    async def scenario() -> None:
        async with running_server(deployment) as server:
            server.accounts.create_user("searcher", None, ["reader"])
            token = server.accounts.create_token("searcher", "test").token
            await asyncio.gather(*(enroll_and_leave(i) for i in identities))
            assert server.datastore.clients.count() == len(identities)
            tls = ssl.create_default_context(cafile=str(deployment.server.ca_cert_path))
            async with httpx.AsyncClient(
                base_url=f"https://127.0.0.1:{server.api_port}/api/v1",
                headers={"Authorization": f"Bearer {token}"},
                verify=tls,
            ) as api:

                async def found() -> set[str]:
                    page = (await api.get("/clients", params={"limit": 1000})).json()
                    return {item["client_id"] for item in page["items"]}

                wanted = {i.client_id for i in identities}
                await wait_until(lambda: _contains(found(), wanted), timeout=10)

    asyncio.run(scenario())


async def _contains(got: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await got
