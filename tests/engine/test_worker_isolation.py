"""Query workers import nothing from the directory they were started from (issue 11, item 1).

``python -m peregrine.engine.worker`` would put the working directory first on ``sys.path``, so a
``yara.py`` planted where an agent or ``peregrine query`` was started would run in every worker
(as root, on an endpoint). Each test plants modules the worker imports (``msgspec`` at start-up,
``yara`` when the plugins load) that leave a marker file when imported, then runs real queries.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from peregrine.engine.worker import IsolatedQuery

PLANTED = ("msgspec", "yara", "apsw", "psutil")


def plant(directory: Path) -> Path:
    """Modules in ``directory`` that each write ``<directory>/marker-<name>`` when imported;
    returns the directory's marker glob root."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in PLANTED:
        marker = directory / f"marker-{name}"
        (directory / f"{name}.py").write_text(
            f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        )
    return directory


def markers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("marker-*"))


def test_a_worker_started_in_a_planted_directory_imports_nothing_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = plant(tmp_path / "planted")
    (planted / "notes.txt").write_text("relative")
    monkeypatch.chdir(planted)
    # Every plugin module loads (yara_scan imports yara); a relative path still means what it
    # means to the caller.
    query = IsolatedQuery("SELECT data FROM read_file('notes.txt')")
    assert list(query) == [(b"relative",)]
    assert markers(planted) == []


def test_peregrine_query_started_in_a_planted_directory_imports_nothing_from_it(
    tmp_path: Path,
) -> None:
    """The console script, as a user runs it from a directory someone else could write to."""
    planted = plant(tmp_path / "planted")
    script = Path(sys.executable).parent / "peregrine"
    run = subprocess.run(
        [str(script), "query", "SELECT count(*) AS n FROM pslist()", "-f", "jsonl"],
        cwd=planted,
        capture_output=True,
        text=True,
        env={**os.environ, "PEREGRINE_STATE_DIR": str(tmp_path / "state")},
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert '"n"' in run.stdout
    assert markers(planted) == []


def test_a_plugin_installed_in_the_environment_reaches_the_isolated_worker(
    tmp_path: Path,
) -> None:
    """A third-party plugin installed the ordinary way (a module and its dist-info with a
    ``peregrine`` entry point, in site-packages) is found by workers, which ignore PYTHONPATH,
    the user's site directory and the working directory. A fresh environment holds only that
    plugin and a ``.pth`` line that adds this environment's packages (peregrine among them)."""
    env_dir = tmp_path / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=60
    )
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = sysconfig.get_path("purelib")
    (site / "parent_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    (site / "peregrine_hello.py").write_text(
        "from peregrine.engine.registry import Col, table\n"
        "from peregrine.hookspecs import hookimpl\n\n"
        "@table(name='hello', description='Says hello.',\n"
        "       columns=[Col('greeting', 'TEXT', 'The greeting.')])\n"
        "def hello(ctx):\n"
        "    yield {'greeting': 'hello from a plugin'}\n\n"
        "@hookimpl\n"
        "def register_query_plugins():\n"
        "    return [hello]\n"
    )
    dist = site / "peregrine_hello-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: peregrine-hello\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[peregrine]\nhello = peregrine_hello\n")
    code = (
        "from peregrine.engine.worker import IsolatedQuery\n"
        "print(list(IsolatedQuery('SELECT greeting FROM hello()')))\n"
    )
    run = subprocess.run(
        [str(python), "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[('hello from a plugin',)]"
