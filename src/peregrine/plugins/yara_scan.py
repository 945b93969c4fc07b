"""YARA scanning with the rules given as text in the query: ``yara`` (a file), ``yara_process``.

They are two tables, not one with "path or pid", so that each target is a *required* argument:
the planner then always runs the scan inside a join (``glob() g JOIN yara(:rules, g.path)``)
instead of choosing a plan that calls it with neither.

Compiled rules are cached by their source text, so joining ``yara`` to thousands of files
compiles once. Each scan's time-out is also cut to what is left of the query's deadline, because
a scan is one long call into libyara that cannot stop itself to check.

``path`` and ``pid`` are hidden columns, so both call forms work: ``yara(:rules, g.path)``
(positional: rules, path, timeout, max_matches; ``yara_process`` then whole_process and
include_self) and
``JOIN yara_process y ON y.rules = :rules AND y.pid = p.pid``. Name them to select them
(``SELECT y.path, y.rule``); ``*`` leaves them out. On Linux, ``yara_process`` reads the
process's memory itself (``yara_process_scan.py``, ``yara_memory.py``).
"""

from __future__ import annotations

import functools
import math
import sys
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
from peregrine.plugins.yara_process_scan import rows as region_rows
from peregrine.plugins.yara_process_scan import scan_process

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


def _common_args(
    target: Arg,
    timeout_doc: str = "Seconds allowed per scan (also cut to the query's deadline).",
    matches_doc: str = "Most string matches listed per rule in `strings`.",
) -> list[Arg]:
    return [
        Arg("rules", "TEXT", "YARA rule source text (compiled once per text).", required=True),
        target,
        Arg("timeout", "REAL", timeout_doc, default=60),
        Arg("max_matches", "INTEGER", matches_doc, default=100),
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


_REGIONS = Col(
    "regions",
    "JSON",
    "The mappings where the rule matched: JSON list of {address, size, perms, path, shared}; "
    "shared: bytes other processes map too, scanned once per query. Empty with "
    "whole_process=1 (and off Linux, where libyara scans).",
)


@table(
    name="yara_process",
    description=(
        "Scan a running process's memory with YARA rules given as text: one row per rule that "
        "matched in any of its mappings, strings at their addresses. Each readable mapping is "
        "its own scan, so a rule's condition holds within one mapping (over 32 MiB: within "
        "32 MiB pieces that overlap by 64 KiB). Memory never touched and 64 KiB blocks of "
        "zeros are skipped. Bytes shared with other processes (a library none of whose pages "
        "this process changed, shared memory) are scanned once per query and reported for "
        "every process that maps them, at its own addresses. whole_process=1: libyara's own "
        "scan instead (one condition over all mappings, each read whole; slower). The processes "
        "running the scan are left out unless include_self=1. pid is a hidden column: select "
        "it by name."
    ),
    arguments=[
        *_common_args(
            Arg("pid", "INTEGER", "Process whose memory to scan.", required=True),
            timeout_doc=(
                "Seconds allowed to scan the process (also cut to the query's deadline); past "
                "it, a warning, and the matches in what was scanned."
            ),
            matches_doc="Most string matches (and mappings) listed per rule.",
        ),
        Arg(
            "whole_process",
            "INTEGER",
            "1: one libyara scan of the whole address space (conditions across mappings).",
            default=0,
        ),
        Arg(
            "include_self",
            "INTEGER",
            "1: also scan the processes running the scan: the query worker and the agent or "
            "CLI that sent the query. Left out by default: their memory holds the rules "
            "themselves, so every rule with strings matches there.",
            default=0,
        ),
    ],
    columns=[*_COLUMNS, _REGIONS],
    platforms=("linux", "darwin", "win32"),
    examples=(
        "SELECT rule FROM yara_process(:rules, 1234)",
        "SELECT p.pid, p.name, y.rule FROM pslist() p "
        "JOIN yara_process y ON y.pid = p.pid AND y.rules = :rules",
    ),
)
def yara_process(
    ctx: QueryContext,
    rules: str,
    pid: int,
    timeout: float = 60,
    max_matches: int = 100,
    whole_process: int = 0,
    include_self: int = 0,
) -> Iterator[dict[str, Any]]:
    if int(pid) in ctx.scanner_pids and not include_self:
        return iter(())  # a match of the rules' own text, not of the process
    if whole_process or not sys.platform.startswith("linux"):
        return _scan(ctx, "yara_process", rules, None, int(pid), timeout, max_matches)
    return _scan_regions(ctx, rules, int(pid), timeout, max_matches)


def _scan_regions(
    ctx: QueryContext, rules: str, pid: int, timeout: float, max_matches: int | None
) -> Iterator[dict[str, Any]]:
    limit = _check_limits("yara_process", timeout, max_matches)
    compiled = compile_rules("yara_process", str(rules))
    ctx.check()
    found = scan_process(ctx, compiled, str(rules), pid, float(timeout), limit)
    if found is None:
        if not psutil.pid_exists(pid):
            ctx.warn(f"yara_process(): process {pid} does not exist (it may have exited)")
        else:
            ctx.warn(f"yara_process(): cannot read the memory map of process {pid}")
        return
    ctx.check()  # a scan cut short by the query's own deadline: that explains it best
    results, problems = found
    for problem in problems:
        ctx.warn(f"yara_process(): {problem}; the matches in what was read are reported")
    for row in region_rows(results, limit):
        row["strings"] = [
            {"identifier": ident, "offset": address, "data": _printable(data), "length": length}
            for ident, address, data, length in row["strings"]
        ]
        yield row


def _check_limits(plugin: str, timeout: float, max_matches: int | None) -> int:
    """The string-match limit, after refusing a time-out that is not a positive number."""
    if timeout is None or float(timeout) <= 0:
        raise PluginError(plugin, f"timeout must be a positive number of seconds, not {timeout}")
    return 100 if max_matches is None else max(0, int(max_matches))


def _scan(
    ctx: QueryContext,
    plugin: str,
    rules: str,
    path: str | None,
    pid: int | None,
    timeout: float,
    max_matches: int | None,
) -> Iterator[dict[str, Any]]:
    limit = _check_limits(plugin, timeout, max_matches)
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
        row = {
            "rule": match.rule,
            "namespace": match.namespace,
            "tags": list(match.tags),
            "meta": dict(match.meta),
            "strings": _strings(match, limit),
        }
        if pid is not None:
            row["regions"] = []
        yield row


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [yara_file, yara_process]
