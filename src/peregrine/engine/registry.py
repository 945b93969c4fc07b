"""What a query plugin is, and the one registry that holds them with their documentation.

A table plugin is a generator plus declared columns and documented arguments (STYLE #3). Its
arguments become hidden columns of an SQLite virtual table, so ``glob('/etc/*')`` and
``glob WHERE pattern = '/etc/*'`` are the same thing, and a required argument is enforced by the
query planner (see ``vtable.py``). A scalar plugin is an SQL function such as ``sha256(path)``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from peregrine.engine.errors import PluginError

if TYPE_CHECKING:
    from peregrine.engine.context import QueryContext

#: The SQL types a column or argument may declare (SQLite affinities, plus JSON text).
SQL_TYPES = ("TEXT", "INTEGER", "REAL", "BLOB", "JSON", "ANY")

#: Operating systems a plugin can declare, as ``sys.platform`` spells their family.
ALL_PLATFORMS = ("linux", "darwin", "win32")


def current_platform() -> str:
    """The platform family of this machine, in the spelling plugins declare."""
    name: str = getattr(sys, "platform")  # noqa: B009 (keep mypy from narrowing to one OS)
    return "linux" if name.startswith("linux") else name


@dataclass(frozen=True)
class Arg:
    """An argument of a plugin; for a table plugin it is also a hidden column.

    ``exact`` is for a filter (an argument named as a column): the plugin keeps exactly the
    rows SQLite's ``=`` would (binary collation), so SQLite does not check each row again;
    given NULL, the engine returns no rows without calling it. A filter's value comes
    converted to the column's type as SQLite would compare it (``affinity.py``: '5' for 5 in a
    text column, 5 for '5' in an INTEGER one); a value from a joined column of another
    affinity may still compare otherwise in SQLite, so an exact filter is for columns whose
    values never read as numbers (``glob``'s ``type``).
    """

    name: str
    type: str = "TEXT"
    doc: str = ""
    required: bool = False
    default: Any = None
    exact: bool = False

    def __post_init__(self) -> None:
        if self.type not in SQL_TYPES:
            raise ValueError(f"argument {self.name!r}: type must be one of {SQL_TYPES}")


@dataclass(frozen=True)
class Col:
    """A column of a table plugin.

    ``expensive`` marks columns (hashes, contents) that a plugin computes lazily: it yields a
    :class:`Lazy` value for them, evaluated only if SQLite asks for that column of that row.
    ``hidden`` leaves a column out of ``SELECT *`` (it is still there by name): for columns so
    costly that selecting everything should not compute them, like the hashes of a whole tree.
    """

    name: str
    type: str = "TEXT"
    doc: str = ""
    expensive: bool = False
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.type not in SQL_TYPES:
            raise ValueError(f"column {self.name!r}: type must be one of {SQL_TYPES}")


class Lazy:
    """A column value computed only when SQLite reads it (hashes, file contents)."""

    __slots__ = ("args", "func")

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func = func
        self.args = args

    def __call__(self) -> Any:
        return self.func(*self.args)


Row = Mapping[str, Any] | Sequence[Any]
TableFunc = Callable[..., Iterable[Row]]


@dataclass(frozen=True)
class TablePlugin:
    """A table-valued function: ``SELECT ... FROM name(args)``.

    An argument whose name is also a column (``pid`` of ``pslist``) is a *filter*: an equality in
    ``WHERE pid = 42`` is handed to the generator so it can skip work, and SQLite still checks it.
    Other arguments are hidden columns, given positionally ``glob('/etc/*')`` or in ``WHERE``.

    An *event* plugin (``events=True``) never ends: it yields a row when something happens and
    waits otherwise (:meth:`QueryContext.wait`). The planner always puts it in the outer loop of
    a join, so a join runs once per event instead of waiting for the event stream to end.

    A plugin with ``batches=True`` yields lists of rows (``glob``: a directory's worth) that
    the engine hands SQLite one row at a time without going back into the generator: one
    Python step less per row, for plugins whose rows cost little to make.
    """

    name: str
    description: str
    columns: tuple[Col, ...]
    func: TableFunc
    arguments: tuple[Arg, ...] = ()
    platforms: tuple[str, ...] = ALL_PLATFORMS
    permissions: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    events: bool = False
    batches: bool = False
    kind: str = field(default="table", init=False)

    def __post_init__(self) -> None:
        columns = {c.name for c in self.columns}
        if len(columns) != len(self.columns):
            raise ValueError(f"plugin {self.name!r}: column names must be unique")
        if len({a.name for a in self.arguments}) != len(self.arguments):
            raise ValueError(f"plugin {self.name!r}: argument names must be unique")
        for arg in self.arguments:
            if arg.exact and arg.name not in columns:
                raise ValueError(
                    f"plugin {self.name!r}: {arg.name!r} is not a column, so it cannot be an "
                    "exact filter (an argument is always given exactly)"
                )
            if arg.name in columns and arg.required:
                raise ValueError(
                    f"plugin {self.name!r}: {arg.name!r} names a column, so it is a filter "
                    "pushed down from WHERE and cannot be required"
                )

    @property
    def hidden_arguments(self) -> tuple[Arg, ...]:
        columns = {c.name for c in self.columns}
        return tuple(a for a in self.arguments if a.name not in columns)

    @property
    def required_args(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arguments if a.required)

    def supported_here(self) -> bool:
        return current_platform() in self.platforms

    def rows(self, ctx: QueryContext, args: Mapping[str, Any]) -> Iterator[Row]:
        """Call the generator with defaults filled in for arguments the query left out."""
        if not self.supported_here():
            raise PluginError(
                self.name,
                f"not supported on this OS ({current_platform()}); "
                f"it runs on: {', '.join(self.platforms)}",
            )
        values = {a.name: args.get(a.name, a.default) for a in self.arguments}
        if any(values[name] is None for name in self.required_args):
            # As in a SQL join: NULL matches nothing. `pslist() p JOIN grep(p.exe, ...)` must
            # skip kernel threads (exe is NULL), not fail.
            return iter(())
        rows = self.func(ctx, **values)
        return itertools.chain.from_iterable(rows) if self.batches else iter(rows)


@dataclass(frozen=True)
class ScalarPlugin:
    """An SQL scalar function: ``SELECT sha256(path) ...``.

    ``func`` receives the :class:`QueryContext` first, so it can honour the deadline.
    """

    name: str
    description: str
    func: Callable[..., Any]
    arguments: tuple[Arg, ...] = ()
    returns: str = "TEXT"
    platforms: tuple[str, ...] = ALL_PLATFORMS
    permissions: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    deterministic: bool = False
    kind: str = field(default="function", init=False)

    def supported_here(self) -> bool:
        return current_platform() in self.platforms


Plugin = TablePlugin | ScalarPlugin


def table(
    name: str,
    description: str,
    columns: Sequence[Col],
    arguments: Sequence[Arg] = (),
    platforms: Sequence[str] = ALL_PLATFORMS,
    permissions: Sequence[str] = (),
    examples: Sequence[str] = (),
    events: bool = False,
    batches: bool = False,
) -> Callable[[TableFunc], TablePlugin]:
    """Decorate a generator ``func(ctx, **args)`` to make it a :class:`TablePlugin`."""

    def wrap(func: TableFunc) -> TablePlugin:
        return TablePlugin(
            name=name,
            description=description,
            columns=tuple(columns),
            func=func,
            arguments=tuple(arguments),
            platforms=tuple(platforms),
            permissions=tuple(permissions),
            examples=tuple(examples),
            events=events,
            batches=batches,
        )

    return wrap


def scalar(
    name: str,
    description: str,
    arguments: Sequence[Arg] = (),
    returns: str = "TEXT",
    platforms: Sequence[str] = ALL_PLATFORMS,
    permissions: Sequence[str] = (),
    examples: Sequence[str] = (),
    deterministic: bool = False,
) -> Callable[[Callable[..., Any]], ScalarPlugin]:
    """Decorate ``func(ctx, *args)`` to make it a :class:`ScalarPlugin`."""

    def wrap(func: Callable[..., Any]) -> ScalarPlugin:
        return ScalarPlugin(
            name=name,
            description=description,
            func=func,
            arguments=tuple(arguments),
            returns=returns,
            platforms=tuple(platforms),
            permissions=tuple(permissions),
            examples=tuple(examples),
            deterministic=deterministic,
        )

    return wrap


class Registry:
    """All query plugins known to this process, by name. Names are unique across kinds."""

    def __init__(self) -> None:
        self._plugins: dict[str, Plugin] = {}

    def add(self, plugin: Plugin) -> None:
        key = plugin.name.lower()
        if key in self._plugins:
            raise ValueError(f"a plugin named {plugin.name!r} is already registered")
        self._plugins[key] = plugin

    def copy(self) -> Registry:
        """A new registry with the same plugins, to extend for one query."""
        other = Registry()
        other._plugins = dict(self._plugins)
        return other

    def get(self, name: str) -> Plugin | None:
        return self._plugins.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._plugins

    def __iter__(self) -> Iterator[Plugin]:
        return iter(sorted(self._plugins.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._plugins)

    @property
    def tables(self) -> list[TablePlugin]:
        return [p for p in self if isinstance(p, TablePlugin)]

    @property
    def functions(self) -> list[ScalarPlugin]:
        return [p for p in self if isinstance(p, ScalarPlugin)]
