"""Downloading uploads whatever they are called, and auditing how the download really ended.

A name outside Latin-1 used to make the hand-built Content-Disposition header unencodable:
the download answered 500 while the audit log said it had been done. The header is now RFC 6266
(an ASCII ``filename`` and the exact name in ``filename*``), and the audit record is written
once the status is known, and again as an error if the transfer breaks off.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from peregrine.api.disposition import ascii_fallback, attachment
from tests.api.conftest import Live
from tests.server.harness import wait_until

NAMES = [
    "отчёт.txt",
    "日本.bin",
    'say "hi".txt',
    "a;b=c.txt",
    "cr\r\nSet-Cookie: x=1.txt",
    "100%41 done.txt",
    "tab\tand 'single'.txt",
    "emoji 🦅.log",
]


def saved_as(header: str) -> str | None:
    """The file name a client that follows RFC 6266 saves as: ``filename*`` when present."""
    params = dict(p.strip().partition("=")[::2] for p in header.split(";")[1:])
    extended = params.get("filename*")
    if extended is None:
        return None
    charset, _, encoded = extended.split("'", 2)
    assert charset == "UTF-8"
    return unquote(encoded, encoding="utf-8", errors="strict")


def collected(live: Live, tmp_path: Path, name: str, data: bytes) -> tuple[str, Any]:
    """(flow id, upload record) of a real collection uploading a file called ``name``."""
    path = tmp_path / name
    path.write_bytes(data)
    flow_id = live.collect("Test.Upload", {"Path": str(path)})
    [upload] = live.server.filestore.uploads(live.client_id, flow_id)
    return flow_id, upload


def download_entries(live: Live, target: str, since: float) -> list[Any]:
    return live.server.audit.query(action="upload.download", target=target, since=since)


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n.encode("unicode_escape").decode())
def test_any_name_downloads_with_its_name(live: Live, tmp_path: Path, name: str) -> None:
    data = name.encode() * 100
    flow_id, upload = collected(live, tmp_path, name, data)
    stored = upload.stored_name.rsplit("/", 1)[-1]
    assert stored == name.replace("\r", "_").replace("\n", "_").replace("\t", "_")
    started = time.time()
    with live.http(live.tokens["reader"]) as http:
        response = http.get(f"/collections/{flow_id}/uploads/{upload.upload_id}")
    assert response.status_code == 200, response.text
    assert response.content == data
    header = response.headers["content-disposition"]
    header.encode("ascii")  # nothing outside ASCII, so nothing a proxy could mangle
    assert "\r" not in header and "\n" not in header
    assert saved_as(header) == stored
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback == ascii_fallback(stored) and fallback.isascii()
    [entry] = download_entries(live, f"{live.client_id}/{flow_id}/{upload.upload_id}", started)
    assert entry.result == "ok" and entry.actor == "reader-user"
    assert entry.parameters["status"] == 200


def test_the_header_shapes() -> None:
    assert attachment("report.txt") == (
        "attachment; filename=\"report.txt\"; filename*=UTF-8''report.txt"
    )
    assert attachment("отчёт.txt").startswith('attachment; filename="_____.txt"; ')
    assert attachment("café.txt").split(";")[1] == ' filename="cafe.txt"'
    assert "filename*=UTF-8''a%3Bb%22c%0D%0A.txt" in attachment('a;b"c\r\n.txt')
    assert saved_as(attachment("\udcff.bin")) == "?.bin"  # a lone surrogate cannot travel
    assert ascii_fallback("日本") == "__" and ascii_fallback("") == "download"


def test_a_download_that_fails_is_audited_as_failed(live: Live, tmp_path: Path) -> None:
    flow_id, upload = collected(live, tmp_path, "vanishing.bin", b"x" * 1000)
    flow_dir = live.server.filestore.flow_dir(live.client_id, flow_id)
    (flow_dir / "uploads" / upload.stored_name).unlink()
    started = time.time()
    with live.http(live.tokens["reader"]) as http:
        response = http.get(f"/collections/{flow_id}/uploads/{upload.upload_id}")
    assert response.status_code == 500
    target = f"{live.client_id}/{flow_id}/{upload.upload_id}"
    [entry] = download_entries(live, target, started)
    assert entry.result == "error" and "vanishing.bin" in (entry.reason or "")


def test_a_download_that_breaks_off_is_audited_as_failed(live: Live, tmp_path: Path) -> None:
    flow_id, upload = collected(live, tmp_path, "shrinking.bin", b"y" * 100_000)
    flow_dir = live.server.filestore.flow_dir(live.client_id, flow_id)
    (flow_dir / "uploads" / upload.stored_name).write_bytes(b"y" * 10)  # shorter than recorded
    started = time.time()
    target = f"{live.client_id}/{flow_id}/{upload.upload_id}"
    with live.http(live.tokens["reader"]) as http, pytest.raises(httpx.HTTPError):
        http.get(f"/collections/{flow_id}/uploads/{upload.upload_id}")
    # The status (200) was recorded before the body; the failure after it, once it happened.
    live.run(wait_until(lambda: len(download_entries(live, target, started)) >= 2, 10))
    newest, first = download_entries(live, target, started)
    assert (first.result, newest.result) == ("ok", "error")
    assert "Content-Length" in (newest.reason or ""), newest.reason


def test_an_unknown_upload_is_audited_as_refused(live: Live, tmp_path: Path) -> None:
    flow_id, _ = collected(live, tmp_path, "present.bin", b"z")
    started = time.time()
    with live.http(live.tokens["reader"]) as http:
        response = http.get(f"/collections/{flow_id}/uploads/nosuchupload")
    assert response.status_code == 404
    [entry] = download_entries(live, f"{live.client_id}/{flow_id}/nosuchupload", started)
    assert entry.result == "refused" and "no upload" in (entry.reason or "")
