"""The GUI's files, read once into memory and versioned by their content.

Serving from a fixed table (not from the file system by request path) means no request can
reach any other file. The version is a hash of every file, so an asset URL changes whenever its
content does and browsers may cache it for good.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


@dataclass(frozen=True)
class Assets:
    """Every servable file by its path under ``static/`` ("js/main.js"), and their version."""

    files: dict[str, Asset]
    version: str

    def get(self, path: str) -> Asset | None:
        return self.files.get(path)


def load_assets(directory: Path = STATIC_DIR) -> Assets:
    files: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type is None:
            continue  # editor leftovers, READMEs: not served
        name = path.relative_to(directory).as_posix()
        body = path.read_bytes()
        files[name] = Asset(body, media_type)
        digest.update(name.encode() + b"\0" + body + b"\0")
    return Assets(files, digest.hexdigest()[:12])
