"""YARA scanning with the rules given as text in the query: ``yara`` (a file), ``yara_process``.

They are two tables, not one with "path or pid", so that each target is a *required* argument:
the planner then always runs the scan inside a join (``glob() g JOIN yara(:rules, g.path)``)
instead of choosing a plan that calls it with neither.

Compiled rules are cached by their source text, so joining ``yara`` to thousands of files
compiles once. Each scan's time-out is also cut to what is left of the query's deadline, because
a scan is one long call into libyara that cannot stop itself to check.

``path`` and ``pid`` are hidden columns, so both call forms work: ``yara(:rules, g.path)``
(positional: rules, path, timeout, max_matches) and ``JOIN yara_process y ON y.rules = :rules
AND y.pid = p.pid``. Name them to select them (``SELECT y.path, y.rule``); ``*`` leaves them out.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import yara

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError, QueryTimeout
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl

_NAME = "yara"


@functools.lru_cache(maxsize=32)
def compile_rules(plugin: str, source: str) -> Any:
    """Compile YARA source once per distinct text; errors carry the compiler's line number."""
    try:
        return yara.compile(source=source)
    except yara.SyntaxError as exc:
        raise PluginError(plugin, f"the rules do not compile: {exc}") from exc
    except yara.Error as exc:
        raise PluginError(plugin, f"the rules do not compile: {exc}") from exc


def _printable(data: bytes) -> str:
    """Matched bytes as text when they are printable ASCII, otherwise as hex (prefixed ``hex:``)."""
    if data and all(32 <= b < 127 or b in (9, 10, 13) for b in data):
        return data.decode("ascii")
    return "hex:" + data.hex()


def _strings(match: Any, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for string in match.strings:
        for instance in string.instances:
            if len(out) >= limit:
                return out
            out.append(
                {
                    "identifier": string.identifier,
                    "offset": instance.offset,
                    "data": _printable(instance.matched_data),
                    "length": instance.matched_length,
                }
            )
    return out


def _scan_timeout(ctx: QueryContext, timeout: float) -> int:
    """Whole seconds for libyara: the argument, cut to the query's remaining time (at least 1)."""
    budget = float(timeout)
    deadline = ctx.deadline
    if deadline is not None:
        budget = min(budget, deadline - time.monotonic())
    return max(1, math.ceil(budget))


def _common_args(target: Arg) -> list[Arg]:
    return [
        Arg("rules", "TEXT", "YARA rule source text (compiled once per text).", required=True),
        target,
        Arg(
            "timeout",
            "REAL",
            "Seconds allowed per scan (also cut to the query's deadline).",
            default=60,
        ),
        Arg(
            "max_matches",
            "INTEGER",
            "Most string matches listed per rule in `strings`.",
            default=100,
        ),
    ]


_COLUMNS = [
    Col("rule", "TEXT", "Name of the matching rule."),
    Col("namespace", "TEXT", "Namespace of the rule."),
    Col("tags", "JSON", "The rule's tags, as a JSON list."),
    Col("meta", "JSON", "The rule's meta section, as a JSON object."),
    Col(
        "strings",
        "JSON",
        "Matched strings: JSON list of {identifier, offset, data, length}; data is the "
        "text when printable, else 'hex:' and the bytes in hex.",
    ),
]


@table(
    name=_NAME,
    description=(
        "Scan a file with YARA rules given as text: one row per matching rule. "
        "path is a hidden column: select it by name."
    ),
    arguments=_common_args(Arg("path", "TEXT", "File to scan.", required=True)),
    columns=_COLUMNS,
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT rule, strings FROM yara('rule x { strings: $a = \"evil\" condition: $a }', "
        "'/tmp/sample')",
        "SELECT g.path, y.rule FROM glob('/usr/bin/*') g JOIN yara(:rules, g.path) y",
        "SELECT g.path, y.rule FROM glob('/tmp/**') g "
        "JOIN yara y ON y.path = g.path AND y.rules = :rules",
    ),
)
def yara_file(
    ctx: QueryContext, rules: str, path: str, timeout: float = 60, max_matches: int = 100
) -> Iterator[dict[str, Any]]:
    return _scan(ctx, _NAME, rules, str(path), None, timeout, max_matches)


@table(
    name="yara_process",
    description=(
        "Scan a running process's memory with YARA rules given as text: one row per matching "
        "rule. pid is a hidden column: select it by name."
    ),
    arguments=_common_args(Arg("pid", "INTEGER", "Process whose memory to scan.", required=True)),
    columns=_COLUMNS,
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT rule FROM yara_process(:rules, 1234)",
        "SELECT p.pid, p.name, y.rule FROM pslist() p "
        "JOIN yara_process y ON y.pid = p.pid AND y.rules = :rules",
    ),
)
def yara_process(
    ctx: QueryContext, rules: str, pid: int, timeout: float = 60, max_matches: int = 100
) -> Iterator[dict[str, Any]]:
    return _scan(ctx, "yara_process", rules, None, int(pid), timeout, max_matches)


def _scan(
    ctx: QueryContext,
    plugin: str,
    rules: str,
    path: str | None,
    pid: int | None,
    timeout: float,
    max_matches: int | None,
) -> Iterator[dict[str, Any]]:
    if timeout is None or float(timeout) <= 0:
        raise PluginError(plugin, f"timeout must be a positive number of seconds, not {timeout}")
    limit = 100 if max_matches is None else max(0, int(max_matches))
    compiled = compile_rules(plugin, str(rules))
    ctx.check()
    seconds = _scan_timeout(ctx, timeout)
    what = f"file {path}" if path is not None else f"process {pid}"
    try:
        if path is not None:
            matches = compiled.match(filepath=path, timeout=seconds)
        else:
            matches = compiled.match(pid=pid, timeout=seconds)
    except yara.TimeoutError:
        ctx.check()  # the query's own deadline explains it best
        ctx.warn(f"{plugin}(): scan of {what} timed out after {seconds} s; no matches reported")
        return
    except yara.Error as exc:
        if ctx.expired():
            raise QueryTimeout(
                f"the query ran past its time-out of {ctx.limits.timeout:g} s"
            ) from exc
        if path is not None and not Path(path).is_file():
            return  # a missing file (or a directory a glob listed) has no matches
        if pid is not None and not psutil.pid_exists(pid):
            ctx.warn(f"{plugin}(): process {pid} does not exist (it may have exited)")
            return
        ctx.warn(f"{plugin}(): cannot scan {what}: {exc}")
        return
    for match in matches:
        yield {
            "rule": match.rule,
            "namespace": match.namespace,
            "tags": list(match.tags),
            "meta": dict(match.meta),
            "strings": _strings(match, limit),
        }


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [yara_file, yara_process]
