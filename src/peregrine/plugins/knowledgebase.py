"""The knowledge base: what ``%%users.homedir%%`` and friends mean on this endpoint.

ForensicArtifacts (FA) definitions write paths with knowledge-base variables and GRR-style globs
(``%%users.homedir%%/.config/*/Extensions/**10``). ``kb_expand`` turns one such path into the glob
patterns that ``glob()`` understands, resolved here and now: one pattern per distinct home
directory, ``**N`` rewritten to ``**`` with its depth in a column of its own. ``knowledge_base``
shows every value, so an analyst can see why a path did or did not expand.

Users come from the account database (``pwd``: /etc/passwd plus NSS), *all* of them: a system
account's home (``/var/www``, ``/bin``) is where an intruder's shell history turns up. Windows
environment variables are only known on Windows; elsewhere a path that needs one expands to
nothing, with a warning, because guessing ``C:\\Windows`` on Linux would be wrong.

``windows_only`` stands in for the FA source types Peregrine cannot collect (Windows Registry,
WMI) so that such a source, if run at all, fails saying why; ``which`` finds a program before an
FA COMMAND source tries to run it, so a tool that is not installed gives no rows, not an error.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import ALL_PLATFORMS, Arg, Col, Plugin, current_platform, table
from peregrine.hookspecs import hookimpl

if sys.platform != "win32":
    import pwd

#: How many directory levels a bare ``**`` matches, as in plaso (the FA maintainers' tool);
#: ``**N`` sets N. GRR, where the format began, used 3.
DEFAULT_GLOBSTAR_DEPTH = 10

_VARIABLE = re.compile(r"%%([A-Za-z0-9_.]+)%%")
_GLOBSTAR = re.compile(r"\*\*(\d*)")
_GLOB_MAGIC = re.compile(r"([*?\[])")

#: Per-user variables on POSIX systems (FA defines only homedir; username is universal).
POSIX_USER_VARIABLES = ("homedir", "username")

#: FA's Windows environment variables: the environment names to try, in order.
WINDOWS_ENVIRONMENT = {
    "environ_allusersappdata": ("ALLUSERSAPPDATA", "PROGRAMDATA"),
    "environ_allusersprofile": ("ALLUSERSPROFILE",),
    "environ_programdata": ("PROGRAMDATA", "ALLUSERSAPPDATA"),
    "environ_programfiles": ("PROGRAMFILES",),
    "environ_programfilesx86": ("PROGRAMFILES(X86)",),
    "environ_systemdrive": ("SYSTEMDRIVE",),
    "environ_systemroot": ("SYSTEMROOT",),
    "environ_windir": ("WINDIR",),
}


@dataclass(frozen=True)
class KbUser:
    username: str
    homedir: str

    def value(self, attribute: str) -> str | None:
        if attribute == "homedir":
            return self.homedir or None
        if attribute == "username":
            return self.username
        return None


def kb_users() -> list[KbUser]:
    """Every account of the password database (empty on Windows, where profiles live in the
    registry, which Peregrine does not read yet)."""
    if sys.platform == "win32":
        return []
    return [KbUser(p.pw_name, p.pw_dir) for p in pwd.getpwall()]


def kb_environment() -> dict[str, str]:
    """FA environment variables with a value on this system (only Windows has them)."""
    if current_platform() != "win32":
        return {}
    upper = {k.upper(): v for k, v in os.environ.items()}
    values: dict[str, str] = {}
    for name, candidates in WINDOWS_ENVIRONMENT.items():
        value = next((upper[c] for c in candidates if upper.get(c)), None)
        if value is None and name == "environ_programdata" and upper.get("ALLUSERSPROFILE"):
            value = upper["ALLUSERSPROFILE"] + "\\Application Data"
        if value is not None:
            values[name] = value
    return values


def _escape_glob(value: str) -> str:
    """A literal value inside a glob pattern: ``*``, ``?`` and ``[`` match only themselves."""
    return _GLOB_MAGIC.sub(r"[\1]", value)


@dataclass(frozen=True)
class Expansion:
    """One glob pattern an FA path stands for here, and the users whose values made it."""

    path: str
    max_depth: int
    users: tuple[str, ...]


def globstar_depth(pattern: str) -> tuple[str, int]:
    """``**N`` -> ``**`` and the depth (the largest N; a bare ``**`` counts as the default)."""
    depths = [int(n) if n else DEFAULT_GLOBSTAR_DEPTH for n in _GLOBSTAR.findall(pattern)]
    return _GLOBSTAR.sub("**", pattern), max(depths, default=DEFAULT_GLOBSTAR_DEPTH)


def expand(
    pattern: str,
    separator: str = "/",
    users: Iterable[KbUser] = (),
    environment: dict[str, str] | None = None,
) -> tuple[list[Expansion], list[str]]:
    """Every glob pattern ``pattern`` stands for, and the variables that had no value.

    A path that needs a variable without a value expands to nothing: collecting the wrong
    place is worse than collecting none.
    """
    environment = environment or {}
    text = pattern.replace(separator, "/") if separator and separator != "/" else pattern
    names = list(dict.fromkeys(_VARIABLE.findall(text)))
    unknown = [n for n in names if not n.startswith("users.") and n not in environment]
    if unknown:
        return [], [f"%%{n}%%" for n in unknown]
    for name in names:
        if not name.startswith("users."):
            text = text.replace(f"%%{name}%%", _escape_glob(environment[name]))
    attributes = [n.removeprefix("users.") for n in names if n.startswith("users.")]
    bad = [a for a in attributes if a not in POSIX_USER_VARIABLES or sys.platform == "win32"]
    if bad:
        return [], [f"%%users.{a}%%" for a in bad]
    candidates: list[tuple[str, str | None]] = []
    if not attributes:
        candidates.append((text, None))
    else:
        for user in users:
            filled = text
            for attribute in attributes:
                value = user.value(attribute)
                if value is None:
                    break
                filled = filled.replace(f"%%users.{attribute}%%", _escape_glob(value))
            else:
                candidates.append((filled, user.username))
    found: dict[str, Expansion] = {}
    for filled, username in candidates:
        glob_pattern, depth = globstar_depth(re.sub(r"/{2,}", "/", filled))
        if not glob_pattern.startswith("/"):
            continue  # a Windows path without a drive, or a relative home: never cwd-relative
        earlier = found.get(glob_pattern)
        named = (username,) if username is not None else ()
        if earlier is None:
            found[glob_pattern] = Expansion(glob_pattern, depth, named)
        else:
            found[glob_pattern] = Expansion(glob_pattern, depth, earlier.users + named)
    return list(found.values()), []


@table(
    name="kb_expand",
    description=(
        "Glob patterns that a ForensicArtifacts path stands for on this endpoint: knowledge-base "
        "variables (%%users.homedir%% ...) filled in for every user, '**N' turned into '**' "
        "plus a depth. Feed the rows to glob(path, NULL, max_depth)."
    ),
    arguments=[
        Arg(
            "pattern",
            "TEXT",
            "A path as ForensicArtifacts writes it, e.g. '%%users.homedir%%/.ssh/*' or "
            "'/var/www/**2/wp-config.php'.",
            required=True,
        ),
        Arg(
            "separator",
            "TEXT",
            "Path separator the pattern uses ('\\' for Windows definitions); turned into '/'.",
            default="/",
        ),
    ],
    columns=[
        Col("path", "TEXT", "Glob pattern for glob(); absolute, with '**' for any depth."),
        Col(
            "max_depth",
            "INTEGER",
            f"Levels '**' may descend: N from '**N', else {DEFAULT_GLOBSTAR_DEPTH}.",
        ),
        Col(
            "users",
            "JSON",
            "Users whose values produced this pattern (several when homes are shared); [] when "
            "the pattern has no user variable.",
        ),
    ],
    platforms=ALL_PLATFORMS,
    examples=(
        "SELECT path, users FROM kb_expand('%%users.homedir%%/.bash_history')",
        "SELECT g.path, g.size FROM kb_expand('%%users.homedir%%/.ssh/*') k "
        "JOIN glob(k.path, NULL, k.max_depth) g",
    ),
)
def kb_expand(ctx: QueryContext, pattern: Any, separator: Any = "/") -> Iterator[tuple[Any, ...]]:
    text = str(pattern)
    if not text.strip():
        raise PluginError("kb_expand", "pattern must not be empty")
    sep = "/" if separator is None else str(separator)
    if len(sep) != 1:
        raise PluginError("kb_expand", f"separator must be one character, not {sep!r}")
    needs_users = "%%users." in text
    expansions, missing = expand(text, sep, kb_users() if needs_users else (), kb_environment())
    if missing:
        ctx.warn(
            f"kb_expand(): {', '.join(missing)} has no value on {current_platform()}; "
            f"skipped {text!r}"
        )
    for expansion in expansions:
        yield (expansion.path, expansion.max_depth, list(expansion.users))


@table(
    name="knowledge_base",
    description=(
        "The knowledge-base values ForensicArtifacts paths are expanded with on this endpoint: "
        "users.homedir and users.username per user, Windows environment values on Windows."
    ),
    columns=[
        Col("name", "TEXT", "Variable as FA writes it without the %%: users.homedir ..."),
        Col("value", "TEXT", "Its value here."),
        Col("username", "TEXT", "The user it belongs to (NULL for system-wide values)."),
    ],
    platforms=ALL_PLATFORMS,
    examples=(
        "SELECT username, value FROM knowledge_base() WHERE name = 'users.homedir'",
        "SELECT * FROM knowledge_base() WHERE username IS NULL",
    ),
)
def knowledge_base(ctx: QueryContext) -> Iterator[tuple[Any, ...]]:
    for name, setting in kb_environment().items():
        yield (name, setting, None)
    for user in ctx.checked(kb_users()):
        for attribute in POSIX_USER_VARIABLES:
            value = user.value(attribute)
            if value is not None:
                yield (f"users.{attribute}", value, user.username)


@table(
    name="which",
    description=(
        "Where a program is: an absolute path if it is an executable file, else looked up on "
        "PATH like a shell does. No row when it is not installed."
    ),
    arguments=[Arg("program", "TEXT", "Program name or path, e.g. 'iptables'.", required=True)],
    columns=[
        Col("path", "TEXT", "Absolute path of the executable that would run."),
    ],
    platforms=ALL_PLATFORMS,
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path FROM which('ls')",
        "SELECT e.stdout FROM which('lsmod') w CROSS JOIN execve('[\"lsmod\"]') e",
    ),
)
def which(ctx: QueryContext, program: Any) -> Iterator[tuple[Any, ...]]:
    name = str(program)
    if not name:
        return
    found = shutil.which(name)
    if found is not None:
        yield (str(Path(found).absolute()),)


@table(
    name="windows_only",
    description=(
        "Stands in for ForensicArtifacts sources Peregrine cannot collect (Windows Registry keys "
        "and values, WMI queries): it always fails, saying why, so such a source never looks "
        "like it found nothing."
    ),
    arguments=[
        Arg("kind", "TEXT", "FA source type: REGISTRY_KEY, REGISTRY_VALUE or WMI.", required=True),
        Arg("spec", "JSON", "The source's attributes (keys, key/value pairs or the query)."),
    ],
    columns=[
        Col("source_type", "TEXT", "The FA source type (no row is ever returned)."),
        Col("attributes", "JSON", "The source's attributes (no row is ever returned)."),
    ],
    platforms=ALL_PLATFORMS,
    examples=("SELECT * FROM windows_only('WMI', '\"SELECT * FROM Win32_Process\"')",),
)
def windows_only(ctx: QueryContext, kind: Any, spec: Any = None) -> Iterator[tuple[Any, ...]]:
    """Raises when the query runs (plugins are called then, not when it is planned)."""
    here = current_platform()
    if here != "win32":
        raise PluginError(
            "windows_only", f"{kind} sources are Windows only (this is {here}); nothing to collect"
        )
    raise PluginError("windows_only", f"Peregrine cannot collect {kind} sources yet")


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [kb_expand, knowledge_base, which, windows_only]
