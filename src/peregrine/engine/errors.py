"""Errors of the query engine, each naming what was wrong so the user can fix it.

QueryError
 ├── QuerySyntaxError       the SQL does not parse or names an unknown table/column/function
 ├── MissingArgumentError   a table plugin was used without a required argument
 ├── PermissionDenied       the query uses a plugin that needs a permission it was not given
 ├── PluginError            a plugin refused its input or cannot run here (e.g. other OS)
 ├── QueryLimitExceeded
 │    ├── QueryTimeout      the soft deadline passed (the plugin or SQLite stopped itself)
 │    └── WorkerKilled      the watchdog killed the worker (hard time-out or memory limit)
 ├── QueryCancelled         someone cancelled it
 └── QueryDenied            the query killed a worker recently and is refused for a while
"""

from __future__ import annotations


class QueryError(Exception):
    """Base of every error the engine reports about a query."""

    kind = "error"


class QuerySyntaxError(QueryError):
    kind = "syntax"


class MissingArgumentError(QueryError):
    kind = "missing_argument"


class PermissionDenied(QueryError):
    kind = "permission_denied"


class PluginError(QueryError):
    """A plugin's own clear error; the message starts with the plugin's name."""

    kind = "plugin"

    def __init__(self, plugin: str, message: str) -> None:
        super().__init__(f"{plugin}(): {message}")
        self.plugin = plugin


class QueryLimitExceeded(QueryError):
    kind = "limit"


class QueryTimeout(QueryLimitExceeded):
    kind = "timeout"


class WorkerKilled(QueryLimitExceeded):
    kind = "worker_killed"


class QueryCancelled(QueryError):
    kind = "cancelled"


class QueryDenied(QueryError):
    kind = "denied"


#: Every concrete error by its ``kind``, so a worker process can send an error over a pipe.
ERRORS_BY_KIND: dict[str, type[QueryError]] = {
    cls.kind: cls
    for cls in (
        QueryError,
        QuerySyntaxError,
        MissingArgumentError,
        PermissionDenied,
        QueryLimitExceeded,
        QueryTimeout,
        WorkerKilled,
        QueryCancelled,
        QueryDenied,
    )
}


def error_from_kind(kind: str, message: str) -> QueryError:
    """Rebuild an error sent by a worker process (``PluginError`` travels as its message)."""
    if kind == PluginError.kind:
        plugin = message.split("(", 1)[0]
        err = PluginError(plugin, "")
        err.args = (message,)
        return err
    cls = ERRORS_BY_KIND.get(kind, QueryError)
    return cls(message)
