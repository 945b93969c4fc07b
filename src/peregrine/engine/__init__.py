"""The endpoint query engine: SQL executed by SQLite over table and scalar plugins."""

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
from peregrine.engine.executor import Column, Engine, QueryResult
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
