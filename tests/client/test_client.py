"""The Python client against a real server and agent: every resource group, streams, errors."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from peregrine.client import (
    AsyncPeregrine,
    AuthenticationError,
    BadRequest,
    ClientDetail,
    Conflict,
    Flow,
    Forbidden,
    HuntProgress,
    IntegrityError,
    NotFound,
    Peregrine,
    PeregrineError,
    TransportError,
    WaitTimeout,
)
from peregrine.client._core import SSEDecoder
from tests.client.conftest import Live
from tests.server.harness import free_port

GOOD_YAML = """\
name: Custom.Client.Hello
description: Says hello.
sources:
  - query: SELECT 'hello' AS greeting
"""
BAD_YAML = """\
name: Custom.Client.Broken
description: Its query does not compile.
sources:
  - query: SELEKT nothing
"""


def test_status_and_me(client: Peregrine) -> None:
    status = client.status()
    assert status.clients >= 1 and status.connected >= 1 and status.version
    me = client.me()
    assert me.name == "admin" and "SERVER_ADMIN" in me.permissions


def test_search_get_and_label_a_client(client: Peregrine, live: Live) -> None:
    page = client.clients.search(f"client:{live.client_id}")
    assert page.total == 1 and page.items[0].client_id == live.client_id
    assert page.items[0].online is True
    labels = client.clients.label(live.client_id, add=["client-test"])
    assert "client-test" in labels
    found = client.clients.search("label:client-test online:true")
    assert [c.client_id for c in found.items] == [live.client_id]
    detail = client.clients.get(live.client_id)
    assert isinstance(detail, ClientDetail) and detail.interrogated is not None
    assert "client-test" not in client.clients.label(live.client_id, remove=["client-test"])


def test_collect_wait_and_page_through_results(client: Peregrine, live: Live) -> None:
    flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 2500})])
    assert flow.flow_id.startswith("F.") and flow.creator == "admin"
    seen: list[Flow] = []
    done = client.collections.wait(flow.flow_id, timeout=60, on_update=seen.append)
    assert done.state == "Finished" and done.rows == 2500 and done.done
    assert seen[-1] == done and len({(f.state, f.rows) for f in seen}) == len(seen)
    assert done.result_sets() == [("Test.Numbers", "numbers")]

    page = client.collections.results(flow.flow_id, "Test.Numbers", "numbers", offset=1000, limit=2)
    assert page.total == 2500
    assert page.rows == [{"n": 1001, "label": "row 00001001"}, {"n": 1002, "label": "row 00001002"}]
    rows = list(client.collections.iter_results(flow.flow_id, "Test.Numbers", "numbers", 700))
    assert [r["n"] for r in rows] == list(range(1, 2501))
    assert flow.flow_id in [f.flow_id for f in client.collections.list(live.client_id)]
    assert client.collections.get(flow.flow_id).rows == 2500


def test_wait_times_out_and_cancel_ends_a_collection(client: Peregrine, live: Live) -> None:
    flow = client.collections.create(live.client_id, {"Test.Numbers": {"N": 2_000_000_000}})
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.collections.wait(flow.flow_id, timeout=1.0)
    assert time.monotonic() - started < 6
    assert isinstance(caught.value, TimeoutError) and flow.flow_id in caught.value.detail
    client.collections.cancel(flow.flow_id)
    done = client.collections.wait(flow.flow_id, timeout=60)
    assert done.state == "Cancelled"
    assert "cancelled by admin" in (done.error or "")


def test_download_checks_the_sha256(client: Peregrine, live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)
    evidence.write_bytes(content)
    flow = client.collections.create(live.client_id, [("Test.Upload", {"Path": str(evidence)})])
    done = client.collections.wait(flow.flow_id, timeout=60)
    assert done.state == "Finished" and done.uploads == 1
    [upload] = client.collections.uploads(flow.flow_id)
    assert upload.sha256 == hashlib.sha256(content).hexdigest() and upload.size == len(content)

    saved = client.collections.download(flow.flow_id, upload.upload_id, tmp_path / "copy.bin")
    assert saved == tmp_path / "copy.bin" and saved.read_bytes() == content
    into = tmp_path / "downloads"
    into.mkdir()
    saved = client.collections.download(flow.flow_id, upload.upload_id, into)
    assert saved.parent == into and saved.read_bytes() == content

    # The stored copy rots on the server's disk: the download is refused, nothing is left.
    stored = live.server.filestore.flow_dir(live.client_id, flow.flow_id) / "uploads"
    stored = stored / upload.stored_name
    rotten = bytearray(stored.read_bytes())
    rotten[1000] ^= 0xFF
    stored.write_bytes(bytes(rotten))
    with pytest.raises(IntegrityError, match="SHA-256"):
        client.collections.download(flow.flow_id, upload.upload_id, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_hunt_lifecycle_stats_results_and_exports(
    client: Peregrine, live: Live, tmp_path: Path
) -> None:
    hunt = client.hunts.create(
        [("Test.Numbers", {"N": 7})], description="client test", tags=["t"], expires_in=3600
    )
    assert hunt.state == "Paused" and hunt.description == "client test"
    assert client.hunts.start(hunt.hunt_id).state == "Running"
    progress: HuntProgress | None = None
    with contextlib.closing(client.hunts.watch(hunt.hunt_id, timeout=60)) as states:
        for progress in states:
            if progress.finished >= 1:
                break
    assert progress is not None and progress.state == "Running"
    stats = client.hunts.stats(hunt.hunt_id)
    assert stats.scheduled == 1 and stats.finished == 1 and stats.rows == 7 and stats.done == 1
    [member] = client.hunts.clients(hunt.hunt_id)
    assert member.client_id == live.client_id and member.state == "Finished"
    assert client.hunts.add_client(hunt.hunt_id, live.client_id) is False

    page = client.hunts.results(hunt.hunt_id, "Test.Numbers", "numbers", limit=3)
    assert page.total == 7 and [r["n"] for r in page.rows] == [1, 2, 3]
    assert page.rows[0]["client_id"] == live.client_id
    rows = list(client.hunts.iter_results(hunt.hunt_id, "Test.Numbers", "numbers", page_size=2))
    assert [r["n"] for r in rows] == list(range(1, 8))

    out = client.hunts.export(hunt.hunt_id, "Test.Numbers", tmp_path / "h.csv", source="numbers")
    with out.open(newline="") as f:
        exported = list(csv.DictReader(f))
    assert [int(r["n"]) for r in exported] == list(range(1, 8))
    out = client.hunts.export(hunt.hunt_id, "Test.Numbers", tmp_path / "h.jsonl", source="numbers")
    assert [json.loads(line)["n"] for line in out.read_text().splitlines()] == list(range(1, 8))
    out = client.hunts.export(
        hunt.hunt_id, "Test.Numbers", tmp_path / "h.data", source="numbers", format="parquet"
    )
    import pyarrow.parquet as pq

    assert pq.read_table(out).column("n").to_pylist() == list(range(1, 8))
    with pytest.raises(ValueError, match=r"\.csv"):
        client.hunts.export(hunt.hunt_id, "Test.Numbers", tmp_path / "h.txt")

    assert client.hunts.pause(hunt.hunt_id).state == "Paused"
    assert client.hunts.stop(hunt.hunt_id, cancel=True).state == "Stopped"
    # A stopped hunt's watch ends at once with its final state.
    assert [p.state for p in client.hunts.watch(hunt.hunt_id, timeout=30)] == ["Stopped"]
    assert client.hunts.archive(hunt.hunt_id).state == "Archived"
    with pytest.raises(Conflict) as caught:
        client.hunts.start(hunt.hunt_id)
    assert caught.value.status == 409 and caught.value.detail
    assert hunt.hunt_id in [h.hunt_id for h in client.hunts.list(state="Archived")]
    assert hunt.hunt_id not in [h.hunt_id for h in client.hunts.list(state=["Running"])]
    assert client.hunts.get(hunt.hunt_id).state == "Archived"


def test_artifacts_list_show_check_put(client: Peregrine) -> None:
    assert [a.name for a in client.artifacts.list("Test.Numbers")] == ["Test.Numbers"]
    shown = client.artifacts.show("Test.Numbers")
    assert shown["name"] == "Test.Numbers" and shown["parameters"][0]["name"] == "N"
    assert [p for p in client.artifacts.check(GOOD_YAML) if p.severity == "error"] == []
    problems = client.artifacts.check(BAD_YAML)
    assert problems and problems[0].severity == "error"
    assert "SELEKT" in str(problems[0]) or "syntax" in str(problems[0]).lower()
    with pytest.raises(BadRequest):
        client.artifacts.put(BAD_YAML)
    [stored] = client.artifacts.put(GOOD_YAML)
    assert stored.name == "Custom.Client.Hello"
    assert client.artifacts.show("Custom.Client.Hello")["name"] == "Custom.Client.Hello"
    with pytest.raises(NotFound):
        client.artifacts.show("No.Such.Artifact")


def test_artifact_yaml_from_a_file(client: Peregrine, tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(BAD_YAML)
    assert client.artifacts.check(path)[0].severity == "error"


def test_tokens_users_and_audit(client: Peregrine, live: Live) -> None:
    issued = client.tokens.create("script", expires_in=3600)
    assert issued.token and issued.username == "admin"
    assert issued.token_id in [t.token_id for t in client.tokens.mine()]
    with live.client(issued.token) as scripted:
        assert scripted.me().name == "admin"
        client.tokens.revoke(issued.token_id)
        with pytest.raises(AuthenticationError):
            scripted.me()

    user = client.users.add("carol", ["reader"])
    assert user.roles == ["reader"] and "COLLECT_CLIENT" not in user.effective_permissions
    assert "COLLECT_CLIENT" in client.users.grant("carol", "analyst").effective_permissions
    assert "analyst" not in client.users.revoke("carol", "analyst").roles
    assert client.users.disable("carol").disabled is not None
    assert "carol" in [u.name for u in client.users.list()]
    with pytest.raises(NotFound):
        client.users.grant("nobody-here", "reader")

    entries = client.audit.query(actor="admin", action="user.create")
    assert any(e.target == "carol" for e in entries)


def test_errors_carry_the_servers_detail(live: Live) -> None:
    with live.client("prg_not_a_token") as stranger, pytest.raises(AuthenticationError) as e401:
        stranger.status()
    assert e401.value.status == 401 and "Bearer" in e401.value.detail

    with live.client(live.reader_token) as reader:
        assert reader.clients.search().total >= 1
        with pytest.raises(Forbidden) as e403:
            reader.collections.create(live.client_id, ["Test.Numbers"])
        assert e403.value.status == 403 and "COLLECT_CLIENT" in e403.value.detail

    with live.client() as client:
        with pytest.raises(NotFound) as e404:
            client.collections.get("F.0000000000000000")
        assert "no collection F.0000000000000000" in e404.value.detail
        with pytest.raises(BadRequest) as e400:
            client.collections.create(live.client_id, ["No.Such.Artifact"])
        assert e400.value.status == 400 and "No.Such.Artifact" in e400.value.detail
        with pytest.raises(BadRequest) as e400:
            client.collections.create(live.client_id, [("Test.Numbers", {"Nope": 1})])
        assert "Nope" in e400.value.detail
        with pytest.raises(BadRequest) as e422:
            client.collections.create("not-a-client", ["Test.Numbers"])
        assert e422.value.status == 422 and "client_id" in e422.value.detail
        with pytest.raises(BadRequest):
            client.clients.search("recent:banana")
    assert all(issubclass(c, PeregrineError) for c in (Forbidden, NotFound, WaitTimeout))


def test_transport_errors(live: Live, tmp_path: Path) -> None:
    with (
        Peregrine(f"https://127.0.0.1:{free_port()}", "x", ca_cert=live.ca_cert) as nowhere,
        pytest.raises(TransportError, match="cannot talk to"),
    ):
        nowhere.status()
    # Without the deployment CA the self-made certificate is not trusted.
    with Peregrine(live.url, live.admin_token) as untrusting, pytest.raises(TransportError):
        untrusting.status()
    missing = tmp_path / "none.pem"
    with pytest.raises(TransportError, match="CA certificate"):
        Peregrine(live.url, "x", ca_cert=missing)


def test_from_env(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in live.env().items():
        monkeypatch.setenv(name, value)
    with Peregrine.from_env() as client:
        assert client.me().name == "admin"
        assert client.url == f"{live.url}/api/v1"
    monkeypatch.delenv("PEREGRINE_URL")
    with pytest.raises(ValueError, match="PEREGRINE_URL"):
        Peregrine.from_env()


def test_async_client(live: Live, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with live.async_client() as client:
            assert isinstance(client, AsyncPeregrine)
            assert (await client.me()).name == "admin"
            flow = await client.collections.create(live.client_id, [("Test.Numbers", {"N": 30})])
            states: list[str] = []
            done = await client.collections.wait(
                flow.flow_id, timeout=60, on_update=lambda f: states.append(f.state)
            )
            assert done.state == "Finished" and states[-1] == "Finished"
            rows = [
                r
                async for r in client.collections.iter_results(
                    flow.flow_id, "Test.Numbers", "numbers", page_size=7
                )
            ]
            assert [r["n"] for r in rows] == list(range(1, 31))
            with pytest.raises(NotFound):
                await client.hunts.get("H.0000000000000000")

            evidence = tmp_path / "small.txt"
            evidence.write_text("async evidence\n")
            flow = await client.collections.create(
                live.client_id, [("Test.Upload", {"Path": str(evidence)})]
            )
            await client.collections.wait(flow.flow_id, timeout=60)
            [upload] = await client.collections.uploads(flow.flow_id)
            saved = await client.collections.download(
                flow.flow_id, upload.upload_id, tmp_path / "copy.txt"
            )
            assert saved.read_text() == "async evidence\n"

            hunt = await client.hunts.create(["Test.Numbers"], expires_in=600)
            await client.hunts.start(hunt.hunt_id)
            async with contextlib.aclosing(client.hunts.watch(hunt.hunt_id, 60)) as watch:
                async for progress in watch:
                    if progress.finished:
                        break
            await client.hunts.stop(hunt.hunt_id)
            out = await client.hunts.export(hunt.hunt_id, "Test.Numbers", tmp_path / "a.jsonl",
                                            source="numbers")  # fmt: skip
            assert len(out.read_text().splitlines()) == 10

    asyncio.run(scenario())


def test_dataframe_needs_pandas(
    client: Peregrine, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        client.collections.dataframe("F.0000000000000000", "Test.Numbers")
    with pytest.raises(ImportError, match="pip install pandas"):
        client.hunts.dataframe("H.0000000000000000", "Test.Numbers")


def test_dataframe_with_pandas(client: Peregrine, live: Live) -> None:
    pytest.importorskip("pandas")
    flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 12})])
    client.collections.wait(flow.flow_id, timeout=60)
    frame = client.collections.dataframe(flow.flow_id, "Test.Numbers", "numbers")
    assert list(frame.columns) == ["n", "label"] and frame["n"].sum() == 78


def test_event_stream_decoding() -> None:
    decoder = SSEDecoder()
    fed = [decoder.feed(line) for line in [": keep-alive", "", 'data: {"a":', "data: 1}", ""]]
    assert fed == [None, None, None, None, '{"a":\n1}']
    assert decoder.feed("event: x\r\n") is None and decoder.feed("data:2\r\n") is None
    assert decoder.feed("\r\n") == "2"


def test_wait_follows_the_event_stream_without_polling(
    client: Peregrine, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    run = Peregrine._run
    monkeypatch.setattr(
        Peregrine, "_run", lambda self, call: sent.append(call.path) or run(self, call)
    )
    flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 40})])
    assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
    assert sent == ["/collections"]  # the create; every state came from the stream


def test_wait_polls_when_the_event_stream_is_unusable(
    client: Peregrine, live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peregrine.client import _core, sync

    def unusable(content_type: str) -> None:
        raise _core.StreamUnusable("a proxy that buffers")

    monkeypatch.setattr(sync, "check_event_stream", unusable)
    sent: list[str] = []
    run = Peregrine._run
    monkeypatch.setattr(
        Peregrine, "_run", lambda self, call: sent.append(call.path) or run(self, call)
    )
    flow = client.collections.create(live.client_id, [("Test.Numbers", {"N": 40})])
    assert client.collections.wait(flow.flow_id, timeout=60).state == "Finished"
    assert sent.count(f"/collections/{flow.flow_id}") >= 1
