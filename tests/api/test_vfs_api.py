"""The file browser's API against a real server and agent: a directory listed by a collection
and kept with its time, a file downloaded with its hashes, who may do what, and bad paths."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Live


def finished(http: httpx.Client, flow_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow = http.get(f"/collections/{flow_id}").json()
        if flow["state"] in ("Finished", "Error", "Cancelled"):
            return dict(flow)
        time.sleep(0.2)
    raise AssertionError(f"{flow_id} did not finish in {timeout} s")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "browse [me]*"
    (root / "sub dir").mkdir(parents=True)
    (root / "evidence.bin").write_bytes(b"\x00evidence\xff" * 5000)
    (root / ".hidden").write_text("dot file\n")
    return root


def test_a_listing_is_collected_then_kept_with_its_time(live: Live, tree: Path) -> None:
    with (
        live.http(live.tokens["investigator"]) as investigator,
        live.http(live.tokens["reader"]) as reader,
    ):
        path = f"{tree}/"  # normalised: no trailing slash
        before = reader.get(f"/clients/{live.client_id}/vfs", params={"path": path})
        assert before.status_code == 200
        assert before.json()["finished"] is None and before.json()["entries"] == []

        started = time.time()
        launched = investigator.post(f"/clients/{live.client_id}/vfs/list", json={"path": path})
        assert launched.status_code == 201, launched.text
        flow = finished(investigator, launched.json()["flow_id"])
        assert flow["state"] == "Finished", flow

        listing = reader.get(f"/clients/{live.client_id}/vfs", params={"path": path}).json()
        assert listing["path"] == str(tree)
        assert listing["finished"]["flow_id"] == flow["flow_id"]
        assert started <= listing["listed"] <= time.time()
        entries = {e["name"]: e for e in listing["entries"]}
        assert set(entries) == {"sub dir", "evidence.bin", ".hidden"}
        assert entries["sub dir"]["type"] == "dir"
        assert entries["evidence.bin"]["size"] == 50_000
        assert listing["entries"][0]["name"] == "sub dir"  # directories first
        assert listing["total"] == 3

        [entry] = live.server.audit.query(action="vfs.list", since=started - 1)
        assert entry.actor == "investigator-user"
        assert entry.target == f"{live.client_id}/{flow['flow_id']}"


def test_a_download_keeps_the_file_and_its_hashes(live: Live, tree: Path) -> None:
    with live.http(live.tokens["investigator"]) as http:
        target = tree / "evidence.bin"
        data = target.read_bytes()
        launched = http.post(f"/clients/{live.client_id}/vfs/download", json={"path": str(target)})
        assert launched.status_code == 201, launched.text
        flow = finished(http, launched.json()["flow_id"])
        assert flow["state"] == "Finished", flow

        stored = http.get(
            f"/clients/{live.client_id}/vfs/file", params={"path": str(target)}
        ).json()
        assert stored["details"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert stored["details"]["md5"] == hashlib.md5(data).hexdigest()
        assert stored["details"]["size"] == len(data)
        upload = stored["upload"]
        assert upload["sha256"] == hashlib.sha256(data).hexdigest()
        copy = http.get(f"/collections/{flow['flow_id']}/uploads/{upload['upload_id']}")
        assert copy.content == data


def test_a_reader_browses_but_cannot_launch(live: Live, tree: Path) -> None:
    with live.http(live.tokens["reader"]) as reader:
        for action in ("list", "download"):
            refused = reader.post(
                f"/clients/{live.client_id}/vfs/{action}", json={"path": str(tree)}
            )
            assert refused.status_code == 403, refused.text
        assert reader.get(f"/clients/{live.client_id}/vfs", params={"path": "/"}).status_code == 200


@pytest.mark.parametrize("path", ["etc", "relative/dir", "/etc\x00/x"])
def test_a_bad_path_is_refused_with_what_to_give(live: Live, path: str) -> None:
    with live.http(live.tokens["investigator"]) as http:
        listing = http.get(f"/clients/{live.client_id}/vfs", params={"path": path})
        assert listing.status_code == 400
        assert "absolute path such as /etc" in listing.json()["detail"]
        launched = http.post(f"/clients/{live.client_id}/vfs/list", json={"path": path})
        assert launched.status_code == 400
        assert "absolute path such as /etc" in launched.json()["detail"]


def test_an_unknown_client_is_not_found(live: Live) -> None:
    with live.http(live.tokens["investigator"]) as http:
        missing = "C.00000000000000aa"
        assert http.get(f"/clients/{missing}/vfs", params={"path": "/"}).status_code == 404
        refused = http.post(f"/clients/{missing}/vfs/list", json={"path": "/"})
        assert refused.status_code == 400 and missing in refused.json()["detail"]
