"""The client's file browser, sorted and filtered result pages, a collection's export and the
async client's event export and follow, sync and async, against a real server and agent."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from peregrine.client import AsyncPeregrine, BadRequest, Forbidden, Peregrine
from tests.client.conftest import Live


def finished_numbers(client: Peregrine, live: Live, n: int) -> str:
    flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": n})])
    assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
    return flow.flow_id


def a_directory(tmp_path: Path) -> tuple[Path, bytes]:
    folder = tmp_path / "browse"
    (folder / "sub").mkdir(parents=True)
    content = b"evidence for the file browser\n" * 100
    (folder / "notes.txt").write_bytes(content)
    return folder, content


def test_file_browser(client: Peregrine, live: Live, tmp_path: Path) -> None:
    folder, content = a_directory(tmp_path)
    before = client.files.listing(live.client_id, str(folder))
    assert before["finished"] is None and before["entries"] == [] and before["total"] == 0

    flow = client.files.list_directory(live.client_id, str(folder))
    assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
    listing = client.files.listing(live.client_id, str(folder))
    assert listing["finished"]["flow_id"] == flow.flow_id and listing["listed"]
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("sub", "dir"),
        ("notes.txt", "file"),
    ]
    assert client.files.listing(live.client_id, str(folder), offset=1, limit=1)["entries"] == [
        listing["entries"][1]
    ]

    target = str(folder / "notes.txt")
    flow = client.files.download_file(live.client_id, target)
    assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
    found = client.files.file(live.client_id, target)
    digest = hashlib.sha256(content).hexdigest()
    assert found["details"]["sha256"] == digest and found["upload"]["sha256"] == digest
    saved = client.collections.download(flow.flow_id, found["upload"]["upload_id"], tmp_path / "c")
    assert saved.read_bytes() == content

    with pytest.raises(BadRequest, match="absolute path"):
        client.files.listing(live.client_id, "etc")
    with live.client(live.reader_token) as reader:
        assert reader.files.listing(live.client_id, str(folder))["total"] == 2
        with pytest.raises(Forbidden):
            reader.files.list_directory(live.client_id, str(folder))


def test_async_file_browser(live: Live, tmp_path: Path) -> None:
    folder, content = a_directory(tmp_path)

    async def scenario() -> None:
        async with live.async_client() as client:
            flow = await client.files.list_directory(live.client_id, str(folder))
            await client.collections.wait(flow.flow_id, timeout=60)
            listing = await client.files.listing(live.client_id, str(folder))
            assert [e["name"] for e in listing["entries"]] == ["sub", "notes.txt"]
            target = str(folder / "notes.txt")
            flow = await client.files.download_file(live.client_id, target)
            await client.collections.wait(flow.flow_id, timeout=60)
            found = await client.files.file(live.client_id, target)
            assert found["details"]["sha256"] == hashlib.sha256(content).hexdigest()

    asyncio.run(scenario())


def test_sorted_and_filtered_pages(client: Peregrine, live: Live) -> None:
    flow_id = finished_numbers(client, live, 50)
    page = client.collections.results(
        flow_id, "Test.Numbers", "numbers", limit=3, sort="n", order="desc"
    )
    assert page.total == 50 and [r["n"] for r in page.rows] == [50, 49, 48]
    page = client.collections.results(
        flow_id, "Test.Numbers", "numbers", filters=["n:>45", "label:0004"]
    )
    assert page.total == 4 and sorted(r["n"] for r in page.rows) == [46, 47, 48, 49]
    rows = client.collections.iter_results(
        flow_id, "Test.Numbers", "numbers", page_size=4, sort="n", order="desc", filters=["n:<=10"]
    )
    assert [r["n"] for r in rows] == list(range(10, 0, -1))
    with pytest.raises(BadRequest, match="nope"):
        client.collections.results(flow_id, "Test.Numbers", "numbers", sort="nope")
    with pytest.raises(ValueError, match="asc or desc"):
        client.collections.results(flow_id, "Test.Numbers", "numbers", sort="n", order="down")

    hunt = client.hunts.create([("Test.Numbers", {"N": 12})], expires_in=600)
    client.hunts.start(hunt.hunt_id)
    deadline = time.monotonic() + 60
    while client.hunts.stats(hunt.hunt_id).finished < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    client.hunts.stop(hunt.hunt_id)
    page = client.hunts.results(
        hunt.hunt_id, "Test.Numbers", "numbers", limit=2, sort="n", order="desc"
    )
    assert page.total == 12 and [r["n"] for r in page.rows] == [12, 11]
    rows = client.hunts.iter_results(
        hunt.hunt_id, "Test.Numbers", "numbers", page_size=2, sort="n", filters=["n:<4"]
    )
    assert [(r["n"], r["client_id"]) for r in rows] == [(n, live.client_id) for n in (1, 2, 3)]

    async def scenario() -> None:
        async with live.async_client() as aclient:
            page = await aclient.collections.results(
                flow_id, "Test.Numbers", "numbers", sort="label", order="desc", limit=1
            )
            assert [r["n"] for r in page.rows] == [50]
            rows = aclient.collections.iter_results(
                flow_id, "Test.Numbers", "numbers", page_size=2, sort="n", filters=["n:>=48"]
            )
            assert [r["n"] async for r in rows] == [48, 49, 50]
            page = await aclient.hunts.results(
                hunt.hunt_id, "Test.Numbers", "numbers", sort="n", order="desc", limit=1
            )
            assert [r["n"] for r in page.rows] == [12]

    asyncio.run(scenario())


def test_collection_export(client: Peregrine, live: Live, tmp_path: Path) -> None:
    flow_id = finished_numbers(client, live, 25)
    out = client.collections.export(flow_id, "Test.Numbers", tmp_path / "f.csv", source="numbers")
    with out.open(newline="") as f:
        assert [int(r["n"]) for r in csv.DictReader(f)] == list(range(1, 26))
    out = client.collections.export(flow_id, "Test.Numbers", tmp_path / "f.jsonl", source="numbers")
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()][
        -1
    ] == "row 00000025"
    out = client.collections.export(
        flow_id, "Test.Numbers", tmp_path / "f.data", source="numbers", format="parquet"
    )
    assert pq.read_table(out).column("n").to_pylist() == list(range(1, 26))
    with pytest.raises(ValueError, match=r"\.csv"):
        client.collections.export(flow_id, "Test.Numbers", tmp_path / "f.txt", source="numbers")

    async def scenario() -> Path:
        async with live.async_client() as aclient:
            return await aclient.collections.export(
                flow_id, "Test.Numbers", tmp_path / "a.csv", source="numbers"
            )

    with asyncio.run(scenario()).open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 25


EVENT_ART = "Test.Client.AsyncEventClock"
EVENTS = f"""\
name: {EVENT_ART}
description: A row every period.
type: CLIENT_EVENT
parameters:
  - {{name: period, type: float, default: 1}}
sources:
  - query: SELECT tick, time FROM clock(:period)
"""


@pytest.mark.timeout(180)
def test_async_events_export_and_follow(live: Live, tmp_path: Path) -> None:
    live.server.repository.load_texts([("async-event-clock.yaml", EVENTS)])

    async def scenario() -> None:
        async with live.async_client() as client:
            assert isinstance(client, AsyncPeregrine)
            started = time.time()
            await client.events.assign(EVENT_ART, {"period": 0.2})
            try:
                followed = [
                    batch
                    async for batch in client.events.follow(live.client_id, EVENT_ART, seconds=4)
                ]
                assert followed and all(b["artifact"] == EVENT_ART for b in followed)
                assert all(b["client_id"] == live.client_id for b in followed)
                ticks = [r["tick"] for b in followed for r in b["rows"]]
                assert ticks == sorted(ticks) and len(ticks) >= 3
                out = await client.events.export(
                    live.client_id, EVENT_ART, tmp_path / "events.jsonl", start=started - 60
                )
                exported = [json.loads(line)["tick"] for line in out.read_text().splitlines()]
                assert set(ticks) <= set(exported) and exported[0] == 1
            finally:
                await client.events.unassign(EVENT_ART)

    asyncio.run(scenario())
