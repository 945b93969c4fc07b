"""Follow a file by name as ``tail -F`` does: what is appended, across rotation and truncation.

A rotated file (the name now opens another inode: ``logrotate``'s rename-and-create) is read to
its end before the new file is read from its start, so the lines written between the last look
and the rotation are not lost. A truncated file (smaller than what was read: ``copytruncate``)
is read again from its start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: Bytes read from a file in one go.
CHUNK = 256 * 1024


class Tail:
    """The bytes appended to ``path`` since the last :meth:`read`, with their offsets."""

    def __init__(self, path: str, from_start: bool = False) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.identity: tuple[int, int] | None = None
        self.offset = 0
        self._open(at_end=not from_start)

    def _open(self, at_end: bool) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (kept open while it is followed)
        except OSError:
            self.file, self.identity = None, None
            return False
        st = os.fstat(handle.fileno())
        self.file, self.identity = handle, (st.st_dev, st.st_ino)
        self.offset = handle.seek(0, os.SEEK_END) if at_end else 0
        return True

    def read(self) -> Iterator[tuple[bytes, int]]:
        """(chunk, offset in its file) for everything appended since the last call; a new
        file (rotated, truncated, appeared) starts at offset 0."""
        if self.file is None:
            self._open(at_end=False)  # appeared after we started: all of it is new
        yield from self._drain()
        try:
            st = Path(self.path).stat()
        except OSError:
            return  # gone for now (mid-rotation): keep what is open, look again next time
        if (st.st_dev, st.st_ino) != self.identity:
            self.close()
            self._open(at_end=False)
            yield from self._drain()
        elif st.st_size < self.offset and self.file is not None:
            self.file.seek(0)
            self.offset = 0
            yield from self._drain()

    def _drain(self) -> Iterator[tuple[bytes, int]]:
        while self.file is not None:
            data = self.file.read(CHUNK)
            if not data:
                return
            yield data, self.offset
            self.offset += len(data)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
