"""``upload(path)``: copy a file into the collection being made, with its SHA-256.

The stored name comes from the endpoint path but can never leave the upload directory: every
component is cleaned (no ``..``, no drive letters or NULs), and the result is checked to resolve
inside the directory. An index line per upload (``uploads.jsonl``) lets the collector list them
with their hashes, even when the query ran in a worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peregrine.engine.context import SKIPPED_UPLOADS, QueryContext, UploadSink
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Plugin, scalar
from peregrine.hookspecs import hookimpl
from peregrine.plugins.hashing import CHUNK, open_regular

INDEX = "uploads.jsonl"
FILES = "files"
_UNSAFE = re.compile(r"[\x00-\x1f<>:\"|?*\\]")
_lock = threading.Lock()


def safe_relative_name(path: str) -> Path:
    """A relative path made from an endpoint path, safe to join under a directory."""
    parts = []
    for part in re.split(r"[/\\]+", path):
        part = _UNSAFE.sub("_", part).rstrip(" .")  # keep dot-files: .bashrc stays .bashrc
        if part and part not in (".", ".."):
            parts.append(part[:200])
    if not parts:
        parts = ["unnamed"]
    return Path(*parts)


def _unique(target: Path) -> Path:
    if not target.exists():
        return target
    for n in range(1, 10_000):
        candidate = target.with_name(f"{target.name}.{n}")
        if not candidate.exists():
            return candidate
    raise PluginError("upload", f"too many uploads named {target.name}")


def _already_uploaded(directory: Path, path: str, size: int) -> str | None:
    try:
        lines = (directory / INDEX).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        record = json.loads(line)
        if record["path"] == path and record["size"] == size:
            return line
    return None


def _skip(ctx: QueryContext, sink: UploadSink, path: str, size: int, why: str) -> None:
    """Warn, and note the file in the sink's list of skipped uploads."""
    ctx.warn(f"upload(): {path}: {why}; skipped")
    record = {"path": path, "size": size, "reason": why}
    with _lock, open(Path(sink.directory) / SKIPPED_UPLOADS, "a", encoding="utf-8") as skipped:
        skipped.write(json.dumps(record) + "\n")


@scalar(
    name="upload",
    description="Copy a file into the collection (its uploads) and return what was stored.",
    arguments=[
        Arg("path", "TEXT", "File on the endpoint to upload.", required=True),
        Arg("name", "TEXT", "Name to store it under (default: the path)."),
    ],
    returns="JSON",
    permissions=("FILESYSTEM_READ",),
    examples=("SELECT upload(path) FROM glob('/var/log/auth.log*')",),
)
def upload(ctx: QueryContext, path: Any, name: Any = None) -> str | None:
    """Returns JSON {path, stored, size, sha256}; NULL (with a warning) when it cannot."""
    sink = ctx.uploads
    if sink is None:
        raise PluginError("upload", "this query is not part of a collection, so it cannot upload")
    if path is None:
        return None
    path = str(path)
    try:
        fd = open_regular(path)
    except OSError as exc:
        ctx.warn(f"upload(): {path}: {exc.strerror}")
        return None
    if fd is None:
        ctx.warn(f"upload(): {path}: not a regular file (or missing)")
        return None
    root = Path(sink.directory) / FILES
    with os.fdopen(fd, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        earlier = _already_uploaded(Path(sink.directory), path, size)
        if earlier is not None and name is None:
            return earlier  # two sources collected the same file: store it once
        if sink.max_bytes is not None and sink.used + size > sink.max_bytes:
            _skip(
                ctx,
                sink,
                path,
                size,
                f"{size} bytes would pass the upload limit of {sink.max_bytes} bytes "
                f"({sink.used} used)",
            )
            return None
        with _lock:  # choose a free name and claim it before anyone else can
            target = _unique(root / safe_relative_name(str(name or path)))
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.resolve().is_relative_to(root.resolve()):
                raise PluginError("upload", f"refusing to store outside the collection: {name}")
            target.touch(exist_ok=False)
        digest = hashlib.sha256()
        copied = 0
        with open(target, "wb") as out:
            while chunk := source.read(CHUNK):
                ctx.check()
                digest.update(chunk)
                out.write(chunk)
                copied += len(chunk)
                if sink.max_bytes is not None and sink.used + copied > sink.max_bytes:
                    break
        if sink.max_bytes is not None and sink.used + copied > sink.max_bytes:
            target.unlink()
            _skip(ctx, sink, path, copied, "grew past the upload limit while copying")
            return None
    sink.used += copied
    record = {
        "path": path,
        "stored": target.relative_to(Path(sink.directory)).as_posix(),
        "size": copied,
        "sha256": digest.hexdigest(),
    }
    with _lock, open(Path(sink.directory) / INDEX, "a", encoding="utf-8") as index:
        index.write(json.dumps(record) + "\n")
    return json.dumps(record)


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [upload]
