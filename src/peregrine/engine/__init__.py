"""The endpoint query engine: SQL executed by SQLite over table and scalar plugins.

``Engine`` and ``QueryResult`` are imported on first use (module ``__getattr__``): they load
SQLite (apsw), which a process that only starts queries in workers (the agent) never needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peregrine.engine.columns import Column
from peregrine.engine.context import ALL_PERMISSIONS, QueryContext, QueryLimits
from peregrine.engine.errors import (
    MissingArgumentError,
    PermissionDenied,
    PluginError,
    QueryCancelled,
    QueryDenied,
    QueryError,
    QueryLimitExceeded,
    QuerySyntaxError,
    QueryTimeout,
    WorkerKilled,
)
from peregrine.engine.registry import (
    Arg,
    Col,
    Lazy,
    Registry,
    ScalarPlugin,
    TablePlugin,
    scalar,
    table,
)

if TYPE_CHECKING:
    from peregrine.engine.executor import Engine, QueryResult

#: Names exported from :mod:`peregrine.engine.executor`, imported when first asked for.
_FROM_EXECUTOR = frozenset({"Engine", "QueryResult"})


def __getattr__(name: str) -> Any:
    if name in _FROM_EXECUTOR:
        from peregrine.engine import executor

        value = getattr(executor, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_EXECUTOR})


__all__ = [
    "ALL_PERMISSIONS",
    "Arg",
    "Col",
    "Column",
    "Engine",
    "Lazy",
    "MissingArgumentError",
    "PermissionDenied",
    "PluginError",
    "QueryCancelled",
    "QueryContext",
    "QueryDenied",
    "QueryError",
    "QueryLimitExceeded",
    "QueryLimits",
    "QueryResult",
    "QuerySyntaxError",
    "QueryTimeout",
    "Registry",
    "ScalarPlugin",
    "TablePlugin",
    "WorkerKilled",
    "scalar",
    "table",
]
