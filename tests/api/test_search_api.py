"""Client search through the API: the operators, combinations, paging, errors, and speed at
100k clients (answered from the server's in-memory index)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Live, live_deployment

FLEET = 100_000


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A deployment of its own (its index gets 100k extra clients), with one real agent
    labelled ``web`` through the API."""
    with live_deployment(tmp_path_factory.mktemp("api-search")) as live:
        now = time.time()

        async def fill() -> None:
            index = live.server.client_index
            for i in range(FLEET):
                index.update(
                    f"C.{i:016x}",
                    labels=["fleet", "even" if i % 2 == 0 else "odd"],
                    os="windows" if i % 10 == 0 else "darwin",
                    hostname=f"desk-{i:06d}",
                    ip_addresses=[f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"],
                    last_seen=now - 86400 - i,
                )

        live.run(fill())
        with live.http(live.tokens["analyst"]) as http:
            labelled = http.post(f"/clients/{live.client_id}/labels", json={"add": ["web"]})
            assert labelled.status_code == 200
        yield live


def search(live: Live, q: str, **params: Any) -> dict[str, Any]:
    with live.http(live.tokens["reader"]) as http:
        response = http.get("/clients", params={"q": q, **params})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ids(result: dict[str, Any]) -> list[str]:
    return [c["client_id"] for c in result["items"]]


def test_the_agent_is_found_by_each_operator(searched: Live) -> None:
    agent = searched.client_id
    record = searched.server.datastore.clients.get(agent)
    assert record is not None and record.hostname and record.ip_addresses
    for q in (
        f"client:{agent}",
        f"host:{record.hostname}",
        f"ip:{record.ip_addresses[0]}",
        "label:web",
        "online:true",
        "recent:10m",
        "os:linux",
        f"label:web os:linux host:{record.hostname[:2]}*",
    ):
        assert ids(search(searched, q)) == [agent], q
    [item] = search(searched, "label:web")["items"]
    assert item["online"] is True and "web" in item["labels"] and item["os"] == "linux"


def test_operators_select_among_many(searched: Live) -> None:
    assert search(searched, "label:fleet", limit=1)["total"] == FLEET
    assert search(searched, "os:windows", limit=1)["total"] == FLEET // 10
    assert search(searched, "os:windows label:odd", limit=1)["total"] == 0
    assert search(searched, "online:false", limit=1)["total"] == FLEET
    assert search(searched, "recent:1h", limit=1)["total"] == 1
    assert ids(search(searched, "host:desk-000042")) == ["C.000000000000002a"]
    assert ids(search(searched, "ip:10.0.1.1")) == ["C.0000000000000101"]
    assert search(searched, "host:desk-00001*", limit=1)["total"] == 10
    assert ids(search(searched, "desk-012345")) == [f"C.{12345:016x}"]  # free text
    assert search(searched, "label:web os:windows")["total"] == 0


def test_pages_are_sorted_and_complete(searched: Live) -> None:
    first = search(searched, "host:desk-0000*", limit=50)
    second = search(searched, "host:desk-0000*", limit=50, offset=50)
    assert first["total"] == second["total"] == 100
    names = [c["hostname"] for c in first["items"] + second["items"]]
    assert names == sorted(names) and len(set(names)) == 100
    assert search(searched, "host:desk-0000*", offset=100)["items"] == []


def test_bad_searches_say_how_to_write_them(searched: Live) -> None:
    with searched.http(searched.tokens["reader"]) as http:
        for q, hint in (
            ("recent:soon", "30m, 2h or 1d"),
            ("host:", "host:web-"),
            ('"open', "quotes"),
            ("online:maybe", "online:true"),
        ):
            response = http.get("/clients", params={"q": q})
            assert response.status_code == 400, q
            assert hint in response.json()["detail"], q
        assert http.get("/clients", params={"limit": 0}).status_code == 422


def test_search_is_fast_at_100k_clients(searched: Live) -> None:
    search(searched, "label:even")  # warm up the connection
    started = time.perf_counter()
    result = search(searched, "label:even os:darwin host:desk-*", limit=100)
    elapsed = time.perf_counter() - started
    assert result["total"] == FLEET // 2 - FLEET // 10
    assert len(result["items"]) == 100
    assert elapsed < 2.0, f"a search over {FLEET} clients took {elapsed:.2f} s"
