"""Uploaded files: the record of a finished upload and where its bytes are placed.

A flow's folder holds, for uploads:

``uploads/<sanitised original path>``
    Finished, verified files (the only thing a download may open).
``uploads.partial/<upload_id>.part`` and ``.json``
    An upload in progress: the bytes so far (its length is the resume offset) and what the agent
    declared (original path, size, SHA-256), plus, once verified, the name it is being moved to.
``uploads.records/<upload_id>.json``
    One :class:`UploadRecord` per finished upload.
``uploads.corrupt/<upload_id>.<ns>.part`` and ``.json``
    Data whose size or hash did not match, kept aside for inspection.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .durable import DurableBatch
from .names import upload_parts
from .rowlog import fsync_dir


@dataclass(frozen=True)
class UploadRecord:
    """A finished, verified upload."""

    upload_id: str
    #: The path on the agent's machine, as the agent sent it.
    path: str
    #: Where it is stored, relative to the flow's ``uploads`` folder (POSIX separators).
    stored_name: str
    size: int
    sha256: str
    finished: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadRecord:
        return cls(
            upload_id=str(data["upload_id"]),
            path=str(data["path"]),
            stored_name=str(data["stored_name"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            finished=float(data["finished"]),
        )


def with_suffix_number(name: str, number: int) -> str:
    """``report.txt`` -> ``report~2.txt``; ``.bashrc`` -> ``.bashrc~2``; ``data`` -> ``data~2``."""
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > 12:
        return f"{name}~{number}"
    return f"{name[:dot]}~{number}{name[dot:]}"


def _free_name(directory: Path, name: str, want_dir: bool) -> str:
    """``name`` or the first ``name~N`` that is free in ``directory`` (or, for a directory
    component, that already is a real directory we can reuse)."""
    number = 1
    candidate = name
    while True:
        target = directory / candidate
        if not os.path.lexists(target):
            return candidate
        if want_dir and target.is_dir() and not target.is_symlink():
            return candidate
        number += 1
        candidate = with_suffix_number(name, number)


def make_dirs(
    base: Path, target: Path, batch: DurableBatch | None = None, *, known: Path | None = None
) -> None:
    """Create ``target`` (under ``base``, which exists) and fsync each new entry's parent so
    the new folders survive a power loss (with a ``batch``: when the batch commits).

    ``known``: a folder between ``base`` and ``target`` believed to exist (the filestore
    remembers its clients' folders). The levels below it are then made from it down, one
    ``mkdir`` each, without first looking for where the tree ends: a hunt's new flow costs
    the folders it makes and nothing more. Only a hint: if it is gone, ``target`` is made
    from ``base``."""
    if known is not None and _made_below(known, target, batch):
        return
    if target.is_dir():
        return
    # Made from the target up (a mkdir is the check): a new flow's folders cost a call each
    # and one more, not a stat per level first as well.
    missing: list[Path] = []
    current = target
    while current != base:
        try:
            current.mkdir()
        except FileExistsError:
            if not current.is_dir():
                raise
            break
        except FileNotFoundError:
            missing.append(current)
            current = current.parent
            continue
        _made(current, batch)
        break
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        _made(directory, batch)


def _made_below(known: Path, target: Path, batch: DurableBatch | None) -> bool:
    """Make ``target``'s levels below ``known`` top down; False if ``known`` is gone. A level
    that exists is taken as a folder: were it a file, the next ``mkdir`` or the caller's
    ``open`` under it fails (NotADirectoryError). Plain strings and ``os``: a hunt's batch
    makes thousands of folders, and ``Path`` objects cost more than the calls."""
    current = os.fspath(known)
    for part in target.relative_to(known).parts:
        current = os.path.join(current, part)  # noqa: PTH118
        try:
            os.mkdir(current)  # noqa: PTH102
        except FileExistsError:
            continue
        except FileNotFoundError:
            return False
        _made(current, batch)
    return True


def _made(directory: str | Path, batch: DurableBatch | None) -> None:
    """Make a new folder's entry in its parent durable (with a batch: when it commits)."""
    if batch is not None:
        batch.created_dir(directory)
    else:
        fsync_dir(Path(directory).parent)


def place(uploads_dir: Path, original_path: str) -> Path:
    """Choose (and create the folders of) the stored location of an upload.

    Folder components that collide with a file, and a file name that is taken, get a ``~N``
    suffix. The result is checked to be inside ``uploads_dir`` after resolving, whatever the
    input. The caller holds the flow's uploads lock, so the chosen name stays free.
    """
    parts = upload_parts(original_path)
    make_dirs(uploads_dir.parent, uploads_dir)
    current = uploads_dir
    for component in parts[:-1]:
        current = current / _free_name(current, component, want_dir=True)
        make_dirs(uploads_dir, current)
    destination = current / _free_name(current, parts[-1], want_dir=False)
    root = uploads_dir.resolve()
    if not destination.resolve().is_relative_to(root) or destination.resolve() == root:
        raise ValueError(f"upload path {original_path!r} does not stay inside the flow")
    return destination
