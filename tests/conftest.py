"""Shared fixtures: a real query engine with every built-in plugin, and a helper to run SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from peregrine.engine import Engine, QueryLimits


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def query(engine: Engine) -> Callable[..., list[dict[str, Any]]]:
    """Run SQL for real and return the rows as dicts (column name -> value)."""

    def run(sql: str, params: Any = None, **limits: Any) -> list[dict[str, Any]]:
        result = engine.execute(sql, params, limits=QueryLimits(**limits))
        names = [c.name for c in result.columns]
        return [dict(zip(names, row, strict=True)) for row in result]

    return run
