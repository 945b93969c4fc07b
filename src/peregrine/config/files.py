"""Writing files that hold secrets: owner-only from the first byte, atomic, durable.

A key file must never exist, even for an instant, with permissions looser than 0600 (a chmod
after the write leaves a window), and a crash mid-write must not leave half a key behind. So the
content goes to a temporary file created 0600 in the same directory, is fsynced, and is renamed
over the target; the directory is fsynced so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only; tighten it if it exists with looser bits."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
        path.chmod(DIR_MODE)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we asked for
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes | str, mode: int = SECRET_MODE) -> None:
    """Replace ``path`` with ``data`` atomically; the file is created with ``mode`` (0600)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = _write_temp(path, raw, mode)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def create_exclusive(path: Path, data: bytes | str, mode: int = SECRET_MODE) -> bool:
    """Create ``path`` with ``data`` only if it does not exist; False when it already did.

    Two processes racing to create the same file both finish with the same content: the loser
    finds the winner's complete file (hard links are atomic and never replace).
    """
    raw = data.encode() if isinstance(data, str) else data
    tmp = _write_temp(path, raw, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: fall back to a checked rename
        if path.exists():
            return False
        tmp.replace(path)
        _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True
