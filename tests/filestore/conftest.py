"""A real filestore in a temporary directory, with valid client and flow ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from peregrine.filestore import Filestore

CLIENT = "C.0123456789abcdef"
FLOW = "F.0123456789ABCDEF"


@pytest.fixture
def store(tmp_path: Path) -> Filestore:
    # No free-space floor: tests on a nearly full host disk must not fail for that reason.
    return Filestore(tmp_path / "filestore", min_free_bytes=0)
