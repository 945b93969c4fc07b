"""Uploads: chunked, resumable, verified by SHA-256, stored under names that cannot escape."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from peregrine.filestore import Filestore, UnknownUpload, UploadCorrupt

from .conftest import CLIENT, FLOW

CHUNK = 64 * 1024


def payload(size: int = 5 * CHUNK + 123) -> bytes:
    return os.urandom(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(store: Filestore, upload_id: str, path: str, data: bytes) -> Path:
    offset = store.start_upload(CLIENT, FLOW, upload_id, path, len(data), sha(data))
    while offset < len(data):
        offset = store.write_chunk(CLIENT, FLOW, upload_id, offset, data[offset : offset + CHUNK])
    record = store.finish_upload(CLIENT, FLOW, upload_id)
    return store.flow_dir(CLIENT, FLOW) / "uploads" / record.stored_name


def test_chunked_upload_resumes_after_a_disconnect(store: Filestore) -> None:
    data = payload()
    digest = sha(data)
    assert store.start_upload(CLIENT, FLOW, "u1", "/var/log/syslog", len(data), digest) == 0
    offset = 0
    for _ in range(3):
        offset = store.write_chunk(CLIENT, FLOW, "u1", offset, data[offset : offset + CHUNK])
    assert offset == 3 * CHUNK
    # The connection drops; a new server object (as after a restart) is asked where to resume.
    again = Filestore(store.root, min_free_bytes=0)
    assert again.upload_offset(CLIENT, FLOW, "u1") == 3 * CHUNK
    assert again.start_upload(CLIENT, FLOW, "u1", "/var/log/syslog", len(data), digest) == offset
    while offset < len(data):
        offset = again.write_chunk(CLIENT, FLOW, "u1", offset, data[offset : offset + CHUNK])
    record = again.finish_upload(CLIENT, FLOW, "u1")
    assert (record.path, record.stored_name, record.size, record.sha256) == (
        "/var/log/syslog",
        "var/log/syslog",
        len(data),
        digest,
    )
    with again.open_upload(CLIENT, FLOW, record.stored_name) as handle:
        assert handle.read() == data
    assert again.uploads(CLIENT, FLOW) == [record]
    # Finishing, starting or sending a chunk again after the end changes nothing.
    assert again.finish_upload(CLIENT, FLOW, "u1") == record
    assert again.start_upload(CLIENT, FLOW, "u1", "/var/log/syslog", len(data), digest) == len(data)
    assert again.write_chunk(CLIENT, FLOW, "u1", 0, data[:CHUNK]) == len(data)
    assert not list((store.flow_dir(CLIENT, FLOW) / "uploads.partial").iterdir())


def test_out_of_order_and_repeated_chunks_are_ignored(store: Filestore) -> None:
    data = payload(3 * CHUNK)
    store.start_upload(CLIENT, FLOW, "u2", "f.bin", len(data), sha(data))
    assert store.write_chunk(CLIENT, FLOW, "u2", CHUNK, data[CHUNK : 2 * CHUNK]) == 0
    assert store.write_chunk(CLIENT, FLOW, "u2", 0, data[:CHUNK]) == CHUNK
    assert store.write_chunk(CLIENT, FLOW, "u2", 0, data[:CHUNK]) == CHUNK  # a resend
    assert store.write_chunk(CLIENT, FLOW, "u2", 2 * CHUNK, data[2 * CHUNK :]) == CHUNK
    assert store.upload_offset(CLIENT, FLOW, "u2") == CHUNK
    assert store.write_chunk(CLIENT, FLOW, "u2", CHUNK, data[CHUNK:]) == 3 * CHUNK
    record = store.finish_upload(CLIENT, FLOW, "u2")
    with store.open_upload(CLIENT, FLOW, record.stored_name) as handle:
        assert handle.read() == data


def test_writing_past_the_declared_size_is_refused(store: Filestore) -> None:
    store.start_upload(CLIENT, FLOW, "u3", "f", 10, sha(b"0123456789"))
    with pytest.raises(ValueError, match="past the declared size"):
        store.write_chunk(CLIENT, FLOW, "u3", 0, b"0123456789x")
    assert store.upload_offset(CLIENT, FLOW, "u3") == 0


def test_hash_mismatch_is_corrupt_and_kept_aside(store: Filestore) -> None:
    data = payload(1000)
    store.start_upload(CLIENT, FLOW, "u4", "/etc/hosts", len(data), sha(b"something else"))
    store.write_chunk(CLIENT, FLOW, "u4", 0, data)
    with pytest.raises(UploadCorrupt, match="SHA-256"):
        store.finish_upload(CLIENT, FLOW, "u4")
    flow = store.flow_dir(CLIENT, FLOW)
    (aside,) = (flow / "uploads.corrupt").glob("u4.*.part")
    assert aside.read_bytes() == data
    assert store.uploads(CLIENT, FLOW) == []
    assert not (flow / "uploads" / "etc" / "hosts").exists()
    # The agent may start over.
    assert store.start_upload(CLIENT, FLOW, "u4", "/etc/hosts", len(data), sha(data)) == 0


def test_short_upload_is_corrupt(store: Filestore) -> None:
    store.start_upload(CLIENT, FLOW, "u5", "x", 100, sha(b"x" * 100))
    store.write_chunk(CLIENT, FLOW, "u5", 0, b"x" * 60)
    with pytest.raises(UploadCorrupt, match="60 bytes received, 100 declared"):
        store.finish_upload(CLIENT, FLOW, "u5")


def test_changed_declaration_starts_over(store: Filestore) -> None:
    store.start_upload(CLIENT, FLOW, "u6", "x", 100, sha(b"a" * 100))
    store.write_chunk(CLIENT, FLOW, "u6", 0, b"a" * 50)
    assert store.start_upload(CLIENT, FLOW, "u6", "x", 120, sha(b"b" * 120)) == 0


def test_unknown_uploads(store: Filestore) -> None:
    with pytest.raises(UnknownUpload):
        store.write_chunk(CLIENT, FLOW, "nope", 0, b"x")
    with pytest.raises(UnknownUpload):
        store.finish_upload(CLIENT, FLOW, "nope")
    assert store.upload_offset(CLIENT, FLOW, "nope") == 0


@pytest.mark.parametrize("upload_id", ["../x", "", ".hidden", "a/b", "x" * 200, "a\x00"])
def test_invalid_upload_ids_are_refused(store: Filestore, upload_id: str) -> None:
    with pytest.raises(ValueError, match="invalid upload id"):
        store.start_upload(CLIENT, FLOW, upload_id, "f", 1, sha(b"x"))


HOSTILE = [
    ("../../etc/passwd", "etc/passwd"),
    ("/abs/path", "abs/path"),
    ("C:\\Windows\\x", "Windows/x"),
    ("\\\\server\\share\\..\\..\\y", "server/share/y"),
    ("a/./b/../../../c", "a/b/c"),
    ("..", "unnamed"),
    ("/", "unnamed"),
    ("nul\x00byte/../tab\there", "nul_byte/tab_here"),
]


@pytest.mark.parametrize(("path", "stored"), HOSTILE)
def test_hostile_paths_stay_inside_the_flow(store: Filestore, path: str, stored: str) -> None:
    uploads = (store.flow_dir(CLIENT, FLOW) / "uploads").resolve()
    target = upload(store, "h1", path, b"data").resolve()
    assert target.is_relative_to(uploads)
    assert target.relative_to(uploads).as_posix() == stored
    assert target.read_bytes() == b"data"


def test_very_long_names_are_shortened_and_stay_distinct(store: Filestore) -> None:
    uploads = (store.flow_dir(CLIENT, FLOW) / "uploads").resolve()
    deep = "/".join(f"d{i}" for i in range(40)) + "/file"
    first = upload(store, "l1", "/" + "a" * 300 + ".log", b"1")
    second = upload(store, "l2", "/" + "a" * 299 + "b.log", b"2")
    third = upload(store, "l3", deep, b"3")
    fourth = upload(store, "l4", "é" * 200, b"4")
    for path in (first, second, third, fourth):
        assert path.resolve().is_relative_to(uploads)
        assert all(len(part.encode()) <= 255 for part in path.relative_to(uploads).parts)
    assert first != second and first.name.endswith(".log")
    assert first.read_bytes() == b"1" and second.read_bytes() == b"2"
    assert len(third.relative_to(uploads).parts) == 16
    assert fourth.read_bytes() == b"4"


def test_name_collisions_get_a_suffix(store: Filestore) -> None:
    first = upload(store, "c1", "/tmp/report.txt", b"first")
    second = upload(store, "c2", "/tmp/report.txt", b"second")
    # A folder component that collides with an existing file.
    third = upload(store, "c3", "/tmp/report.txt/inner", b"third")
    assert first.name == "report.txt" and second.name == "report~2.txt"
    assert third.parent.name == "report~3.txt" and third.read_bytes() == b"third"
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    names = [r.stored_name for r in store.uploads(CLIENT, FLOW)]
    assert names == ["tmp/report.txt", "tmp/report~2.txt", "tmp/report~3.txt/inner"]


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "", "."])
def test_download_cannot_leave_the_uploads(store: Filestore, name: str) -> None:
    upload(store, "d1", "/x", b"x")
    with pytest.raises(ValueError, match="not inside"):
        store.open_upload(CLIENT, FLOW, name)


def test_crash_between_move_and_record_is_finished_on_retry(store: Filestore) -> None:
    """A process killed after moving the verified file but before writing its record: the
    retry finds the file where the intent said and does not store it twice."""
    data = b"payload"
    store.start_upload(CLIENT, FLOW, "k1", "/f", len(data), sha(data))
    store.write_chunk(CLIENT, FLOW, "k1", 0, data)
    record = store.finish_upload(CLIENT, FLOW, "k1")
    flow = store.flow_dir(CLIENT, FLOW)
    # Rewind to the state just after the move: the record is gone, the intent is there.
    (flow / "uploads.records" / "k1.json").unlink()
    intent = {"upload_id": "k1", "path": "/f", "size": 7, "sha256": sha(data), "stored_name": "f"}
    (flow / "uploads.partial" / "k1.json").write_text(json.dumps(intent))
    again = store.finish_upload(CLIENT, FLOW, "k1")
    assert again.stored_name == record.stored_name == "f"
    assert sorted(p.name for p in (flow / "uploads").iterdir()) == ["f"]
