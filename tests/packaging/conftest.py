"""The packages scripts/build-deb makes, built once for every test of this folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="package")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = tmp_path_factory.mktemp("debs")
    run(sys.executable, str(REPO / "scripts/build-deb"), "--out", str(out), "--compress", "gzip")
    built = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    assert set(built) == {"peregrine-server", "peregrine-agent"}
    yield built
    shutil.rmtree(out, ignore_errors=True)
