"""``peregrine`` starts lean: a command imports what it needs, not the whole package.

Before, every command module was imported before the arguments were parsed (892 modules and
about 2.2 s for ``peregrine version`` on the reference box; ``benchmarks/bench_cli_startup.py``).
Each test runs the console script's entry point in a fresh interpreter and reads its
``sys.modules``; the table test checks that loading commands on demand gives the same commands
as loading them all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.main import get_command

from peregrine.cli.full_app import COMMANDS, command_app, full_app

#: Never loaded to print the version or a remote command's help: the server, the API, the
#: datastore and its SQL stack, the query engine and its libraries, the API client's HTTP stack,
#: cryptography.
HEAVY = (
    "peregrine.server",
    "peregrine.api",
    "peregrine.datastore",
    "peregrine.engine",
    "peregrine.plugins",
    "peregrine.client",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "httpx",
    "duckdb",
    "pyarrow",
    "apsw",
    "cryptography",
    "argon2",
)


def modules_after(args: list[str], cwd: Path) -> tuple[str, list[str]]:
    """Run ``peregrine ARGS`` through ``peregrine.cli.main``; its output and loaded modules."""
    code = f"""
import contextlib, io, json, sys
sys.argv = ["peregrine", *{args!r}]
from peregrine.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps({{"out": out.getvalue(), "modules": sorted(sys.modules)}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    return result["out"], result["modules"]


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_version_imports_no_heavy_module(tmp_path: Path) -> None:
    out, modules = modules_after(["version"], tmp_path)
    assert out.strip() == "0.1.0"
    assert heavy(modules) == []
    assert "peregrine.cli.remote_cmd" not in modules
    assert "typer" not in modules  # nothing to parse


def test_version_help_goes_through_the_command_table(tmp_path: Path) -> None:
    out, modules = modules_after(["version", "--help"], tmp_path)
    assert "Print Peregrine's version." in out
    assert heavy(modules) == []


def test_the_clients_help_imports_only_the_remote_commands(tmp_path: Path) -> None:
    out, modules = modules_after(["clients", "--help"], tmp_path)
    assert "search" in out and "label" in out and "delete" in out
    assert "peregrine.cli.remote_cmd" in modules
    assert heavy(modules) == []
    assert "peregrine.cli.users_cmd" not in modules


def test_loading_on_demand_gives_every_command_of_the_full_table() -> None:
    """The lazy table names every command the modules add, and each command
    loaded alone has the help and parameters of the one in the full table."""
    full = get_command(full_app())
    lazy = get_command(command_app())
    context = lazy.make_context("peregrine", ["version"])
    assert lazy.list_commands(context) == list(COMMANDS)  # type: ignore[attr-defined]
    assert sorted(COMMANDS) == sorted(full.commands)  # type: ignore[attr-defined]
    for name in COMMANDS:
        loaded = lazy.get_command(context, name)  # type: ignore[attr-defined]
        expected = full.commands[name]  # type: ignore[attr-defined]
        assert loaded.help == expected.help, name
        assert [p.name for p in loaded.params] == [p.name for p in expected.params], name
        assert sorted(getattr(loaded, "commands", {})) == sorted(
            getattr(expected, "commands", {})
        ), name


def test_a_mistyped_command_is_refused_with_the_close_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from peregrine.cli import main; main()", "clinets"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert "No such command 'clinets'. Did you mean 'clients'" in done.stderr


def test_the_help_lists_every_command(tmp_path: Path) -> None:
    out, _ = modules_after(["--help"], tmp_path)
    names = re.findall(r"^│ ([a-z][\w-]*) ", out, re.MULTILINE)  # not wrapped lines, options
    assert names == list(COMMANDS)
