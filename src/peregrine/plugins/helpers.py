"""Small SQL helpers: regular expressions, time and size formatting, base64, paths, env.

SQLite's json1 (``json_extract``, ``json_each``) and ``hex()`` are built in and not repeated here.
``regexp`` makes SQLite's ``x REGEXP 'pattern'`` operator work. Regular expressions are Python's
``re`` syntax and are compiled once per pattern (see :func:`compile_regex`).

NULL in gives NULL out, as SQL's own functions do.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ntpath
import os
import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, scalar, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.text import compile_regex


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@scalar(
    name="regexp",
    description="True when the text matches the Python regular expression anywhere; backs "
    "the `text REGEXP pattern` operator.",
    arguments=[
        Arg("pattern", "TEXT", "Python regular expression."),
        Arg("text", "TEXT", "Text to search."),
    ],
    returns="INTEGER",
    examples=("SELECT name FROM pslist() WHERE cmdline REGEXP '(?i)nc\\s+-l'",),
    deterministic=True,
)
def regexp(ctx: QueryContext, pattern: Any, text: Any) -> int | None:
    if pattern is None or text is None:
        return None
    return int(compile_regex("regexp", _text(pattern)).search(_text(text)) is not None)


@scalar(
    name="regex_extract",
    description="The first match of a regular expression in the text (or one of its groups).",
    arguments=[
        Arg("text", "TEXT", "Text to search."),
        Arg("pattern", "TEXT", "Python regular expression."),
        Arg(
            "group",
            "ANY",
            "Group number or name to return (default 0: the whole match).",
            default=0,
        ),
    ],
    examples=("SELECT regex_extract(cmdline, '--port[= ](\\d+)', 1) FROM pslist()",),
    deterministic=True,
)
def regex_extract(ctx: QueryContext, text: Any, pattern: Any, group: Any = 0) -> str | None:
    if text is None or pattern is None:
        return None
    regex = compile_regex("regex_extract", _text(pattern))
    hit = regex.search(_text(text))
    if hit is None:
        return None
    try:
        return hit.group(group if group is not None else 0)
    except IndexError as exc:
        raise PluginError(
            "regex_extract", f"the pattern {regex.pattern!r} has no group {group!r}"
        ) from exc


@scalar(
    name="regex_replace",
    description="Replace every match of a regular expression (\\1 or \\g<name> refer to groups).",
    arguments=[
        Arg("text", "TEXT", "Text to change."),
        Arg("pattern", "TEXT", "Python regular expression."),
        Arg("replacement", "TEXT", "Replacement text."),
    ],
    examples=("SELECT regex_replace(line, '\\d+\\.\\d+\\.\\d+\\.\\d+', 'IP') FROM lines('/x')",),
    deterministic=True,
)
def regex_replace(ctx: QueryContext, text: Any, pattern: Any, replacement: Any) -> str | None:
    if text is None or pattern is None or replacement is None:
        return None
    regex = compile_regex("regex_replace", _text(pattern))
    try:
        return regex.sub(_text(replacement), _text(text))
    except (re.error, IndexError) as exc:
        raise PluginError("regex_replace", f"bad replacement {replacement!r}: {exc}") from exc


@table(
    name="regex_findall",
    description="Every match of a regular expression in a text, one row each.",
    arguments=[
        Arg("text", "TEXT", "Text to search.", required=True),
        Arg("pattern", "TEXT", "Python regular expression.", required=True),
    ],
    columns=[
        Col("match", "TEXT", "Text of the match."),
        Col("groups", "JSON", "The match's groups, as a JSON list (null for unmatched)."),
        Col("start", "INTEGER", "Character offset where the match starts (0-based)."),
        Col("end", "INTEGER", "Character offset just after the match."),
    ],
    examples=(
        "SELECT match FROM regex_findall('a=1, b=2', '\\w=(\\d)')",
        "SELECT p.pid, r.match FROM pslist() p "
        "JOIN regex_findall(p.cmdline, '\\d+\\.\\d+\\.\\d+\\.\\d+') r",
    ),
)
def regex_findall(ctx: QueryContext, text: Any, pattern: Any) -> Iterator[dict[str, Any]]:
    regex = compile_regex("regex_findall", _text(pattern))
    for hit in ctx.checked(regex.finditer(_text(text))):
        yield {
            "match": hit.group(0),
            "groups": list(hit.groups()),
            "start": hit.start(),
            "end": hit.end(),
        }


@table(
    name="split",
    description="Split a text on a separator, one row per piece (the separator is literal).",
    arguments=[
        Arg("text", "TEXT", "Text to split.", required=True),
        Arg("sep", "TEXT", "Separator (literal, not a regex; default ',').", default=","),
    ],
    columns=[
        Col("value", "TEXT", "The piece."),
        Col("idx", "INTEGER", "Position of the piece, from 0 (like json_each's key)."),
    ],
    examples=(
        "SELECT value FROM split('a,b,c')",
        "SELECT e.value AS dir FROM environ(1) v JOIN split(v.value, ':') e WHERE v.name = 'PATH'",
    ),
)
def split(ctx: QueryContext, text: Any, sep: Any = ",") -> Iterator[tuple[str, int]]:
    separator = "," if sep is None else _text(sep)
    if separator == "":
        raise PluginError("split", "sep must not be empty")
    for n, piece in enumerate(ctx.checked(_text(text).split(separator))):
        yield piece, n


@scalar(
    name="format_time",
    description="Format epoch seconds as UTC time (ISO 8601 by default, or strftime format).",
    arguments=[
        Arg("epoch", "REAL", "Seconds since 1970-01-01 UTC."),
        Arg("fmt", "TEXT", "strftime format.", default="%Y-%m-%dT%H:%M:%SZ"),
    ],
    examples=("SELECT name, format_time(create_time) FROM pslist()",),
    deterministic=True,
)
def format_time(ctx: QueryContext, epoch: Any, fmt: Any = "%Y-%m-%dT%H:%M:%SZ") -> str | None:
    if epoch is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(float(epoch), tz=dt.UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise PluginError("format_time", f"{epoch!r} is not a usable epoch time: {exc}") from exc
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if fmt is None else _text(fmt))


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


@scalar(
    name="humanize_bytes",
    description="A byte count as people read it, in powers of 1024: 1536 -> '1.5 KiB'.",
    arguments=[Arg("n", "INTEGER", "Number of bytes.")],
    examples=("SELECT path, humanize_bytes(size) FROM glob('/var/log/*')",),
    deterministic=True,
)
def humanize_bytes(ctx: QueryContext, n: Any) -> str | None:
    if n is None:
        return None
    try:
        size = float(n)
    except (TypeError, ValueError):
        raise PluginError("humanize_bytes", f"{n!r} is not a number of bytes") from None
    sign = "-" if size < 0 else ""
    size = abs(size)
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(size)} B"
            return f"{sign}{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@scalar(
    name="base64_encode",
    description="Base64 of a text (its UTF-8 bytes) or a blob.",
    arguments=[Arg("data", "ANY", "Text or blob.")],
    examples=("SELECT base64_encode('hello')",),
    deterministic=True,
)
def base64_encode(ctx: QueryContext, data: Any) -> str | None:
    if data is None:
        return None
    raw = data if isinstance(data, bytes) else str(data).encode()
    return base64.b64encode(raw).decode("ascii")


@scalar(
    name="base64_decode",
    description="Decode base64 (standard or URL-safe alphabet, padding optional) to a blob; "
    "wrap in CAST(... AS TEXT) for text.",
    arguments=[Arg("text", "TEXT", "Base64 text.")],
    returns="BLOB",
    examples=("SELECT CAST(base64_decode('aGVsbG8=') AS TEXT)",),
    deterministic=True,
)
def base64_decode(ctx: QueryContext, text: Any) -> bytes | None:
    if text is None:
        return None
    value = _text(text).strip().replace("-", "+").replace("_", "/")
    value += "=" * (-len(value) % 4)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PluginError("base64_decode", f"not valid base64: {exc}") from exc


def _pathmod(path: str) -> Any:
    """Windows paths (with backslashes or a drive) split as Windows does, others as POSIX."""
    return ntpath if "\\" in path or re.match(r"^[A-Za-z]:", path) else posixpath


@scalar(
    name="basename",
    description="The last component of a path ('/etc/passwd' -> 'passwd'); Windows paths too.",
    arguments=[Arg("path", "TEXT", "A path.")],
    examples=("SELECT basename(exe) FROM pslist()",),
    deterministic=True,
)
def basename(ctx: QueryContext, path: Any) -> str | None:
    if path is None:
        return None
    text = _text(path)
    module = _pathmod(text)
    result: str = module.basename(text.rstrip("/\\") or text)
    return result


@scalar(
    name="dirname",
    description="The directory part of a path ('/etc/passwd' -> '/etc'); Windows paths too.",
    arguments=[Arg("path", "TEXT", "A path.")],
    examples=("SELECT DISTINCT dirname(exe) FROM pslist()",),
    deterministic=True,
)
def dirname(ctx: QueryContext, path: Any) -> str | None:
    if path is None:
        return None
    text = _text(path)
    module = _pathmod(text)
    result: str = module.dirname(text.rstrip("/\\") or text)
    return result


@scalar(
    name="env",
    description="An environment variable of the agent process (NULL when unset).",
    arguments=[Arg("name", "TEXT", "Variable name.")],
    examples=("SELECT env('HOME')",),
)
def env(ctx: QueryContext, name: Any) -> str | None:
    if name is None:
        return None
    return os.environ.get(_text(name))


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [
        regexp,
        regex_extract,
        regex_replace,
        regex_findall,
        split,
        format_time,
        humanize_bytes,
        base64_encode,
        base64_decode,
        basename,
        dirname,
        env,
    ]
