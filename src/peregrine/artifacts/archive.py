"""The collection archive: what an offline collection writes and the server will import.

A zip file (ZIP64, so any size) with:

* ``manifest.json`` — format version, host facts, times, every artifact with its parameters and
  each source's status, row count, columns, and the SHA-256 of its result file; every upload.
* ``results/<Artifact.Name>/<source>.jsonl`` — one JSON object per row, streamed in.
* ``uploads/files/...`` — uploaded files under sanitised names; ``uploads/uploads.jsonl`` indexes
  them with their original path, size and SHA-256.
* ``log.jsonl`` — what happened, one JSON object per event.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec

FORMAT = "peregrine-collection/1"
MANIFEST = "manifest.json"


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


_encode = msgspec.json.Encoder(enc_hook=_default).encode


def result_path(artifact: str, source: str) -> str:
    return f"results/{artifact}/{source or 'default'}.jsonl"


class ArchiveWriter:
    """Streams result sets, uploads and logs into a zip; nothing is held in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.log_lines: list[bytes] = []

    def write_rows(
        self, artifact: str, source: str, rows: Iterable[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Write a result set; return its file name, row count and SHA-256."""
        name = result_path(artifact, source)
        digest = hashlib.sha256()
        count = 0
        with self.zip.open(name, "w", force_zip64=True) as out:
            for row in rows:
                line = _encode(row) + b"\n"
                digest.update(line)
                out.write(line)
                count += 1
        return {"file": name, "rows": count, "sha256": digest.hexdigest()}

    def log(self, level: str, message: str, **fields: Any) -> None:
        event = {"time": time.time(), "level": level, "message": message, **fields}
        self.log_lines.append(_encode(event) + b"\n")

    def add_uploads(self, directory: Path) -> list[dict[str, Any]]:
        """Copy the files ``upload()`` stored into the archive; return the upload index."""
        index = directory / "uploads.jsonl"
        if not index.exists():
            return []
        uploads = [json.loads(line) for line in index.read_text().splitlines() if line]
        for entry in uploads:
            stored = directory / entry["stored"]
            self.zip.write(stored, f"uploads/{entry['stored']}")
        self.zip.write(index, "uploads/uploads.jsonl")
        return uploads

    def close(self, manifest: dict[str, Any]) -> None:
        with self.zip.open("log.jsonl", "w") as out:
            out.writelines(self.log_lines)
        manifest = {"format": FORMAT, **manifest}
        self.zip.writestr(MANIFEST, json.dumps(manifest, indent=1, default=str))
        self.zip.close()


def read_manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} archive (format {manifest.get('format')!r})")
    return manifest


def read_rows(path: Path, artifact: str, source: str = "") -> list[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive, archive.open(result_path(artifact, source)) as f:
        return [json.loads(line) for line in _lines(f)]


def _lines(stream: IO[bytes]) -> Iterable[bytes]:
    for line in stream:
        if line.strip():
            yield line
