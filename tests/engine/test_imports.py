"""``peregrine.engine`` loads SQLite (apsw) only when a query runs in this process.

The agent starts every query in a worker: the engine package, the light names it exports and
the parent side of a worker must not load apsw (nor psutil, unless a CPU or memory limit needs
the watchdog to measure the worker). Each check runs a fresh interpreter and reads its
``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import peregrine.engine
from peregrine.engine import executor


def run_python(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_package_loads_sqlite_only_when_the_engine_is_asked_for() -> None:
    result = run_python("""
import json, sys
from peregrine.engine import Column, QueryContext, QueryError, QueryLimits, Registry, table
before = "apsw" in sys.modules
from peregrine.engine import Engine
import peregrine.engine.executor
print(json.dumps({"before": before, "after": "apsw" in sys.modules,
                  "same": Engine is peregrine.engine.executor.Engine}))
""")
    assert result == {"before": False, "after": True, "same": True}


def test_every_exported_name_resolves() -> None:
    for name in peregrine.engine.__all__:
        assert getattr(peregrine.engine, name) is not None, name
    assert peregrine.engine.Engine is executor.Engine
    assert peregrine.engine.QueryResult is executor.QueryResult
    assert set(peregrine.engine.__all__) <= set(dir(peregrine.engine))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = peregrine.engine.NoSuchName  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("limits", "psutil_loaded"),
    [("QueryLimits(timeout=30)", False), ("QueryLimits(timeout=30, cpu_limit=90)", True)],
)
def test_the_parent_side_of_a_worker_loads_neither_sqlite_nor_psutil(
    limits: str, psutil_loaded: bool
) -> None:
    """The rows come back; apsw stays out; psutil is loaded only for a CPU limit."""
    result = run_python(f"""
import json, sys
from peregrine.engine import QueryLimits
from peregrine.engine.worker import IsolatedQuery
query = IsolatedQuery("SELECT 1 AS one, 'x' AS two", limits={limits})
rows = [list(row) for row in query]
query._watchdog.join(10)  # it has stopped watching: whatever it needed is imported
print(json.dumps({{"columns": [c.name for c in query.columns], "rows": rows,
                  "apsw": "apsw" in sys.modules, "psutil": "psutil" in sys.modules}}))
""")
    assert result == {
        "columns": ["one", "two"],
        "rows": [[1, "x"]],
        "apsw": False,
        "psutil": psutil_loaded,
    }
