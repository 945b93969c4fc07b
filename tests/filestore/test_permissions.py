"""The filestore holds evidence: its root folder is owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

from peregrine.filestore import Filestore


def test_the_filestore_root_is_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "filestore"
    Filestore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    root.chmod(0o755)  # an existing, too open folder is tightened at start
    Filestore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
