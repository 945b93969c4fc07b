"""The format of a notebook or timeline export: the one asked for, else the file's suffix."""

from __future__ import annotations

import os
from pathlib import Path


def format_for(
    path: str | os.PathLike[str], fmt: str | None, formats: tuple[str, ...], what: str
) -> str:
    chosen = fmt or Path(path).suffix.lstrip(".").lower()
    if chosen not in formats:
        raise ValueError(f"export a {what} as {' or '.join(formats)}, not {chosen!r}")
    return chosen
