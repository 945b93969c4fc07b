"""What users leave behind: ``crontab`` entries, ``shell_history`` and SSH ``authorized_keys``.

These are the usual places persistence and hands-on-keyboard activity show up. Per-user files are
found through the account database (every user with a home directory); each table also reads one
given file (``WHERE path = ...``) so evidence copied from another machine can be parsed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, current_platform, table
from peregrine.hookspecs import hookimpl

if TYPE_CHECKING or current_platform() != "win32":
    import pwd


# --- shared -------------------------------------------------------------------------------------


def _expand(pattern: str) -> list[Path]:
    """A file, or every file a glob pattern matches (sorted)."""
    if not any(ch in pattern for ch in "*?["):
        return [Path(pattern)]
    path = Path(pattern)
    if path.is_absolute():
        return sorted(Path(path.anchor).glob(str(path.relative_to(path.anchor))))
    return sorted(Path().glob(pattern))


def _read(ctx: QueryContext, plugin: str, path: Path) -> bytes | None:
    """The bytes of a file; None (with a warning unless it just is not there) when unreadable."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        ctx.warn(f"{plugin}(): {path} is a directory, skipped")
    except OSError as exc:
        ctx.warn(f"{plugin}(): cannot read {path} ({exc.strerror})")
    return None


def _owner(path: Path) -> str | None:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


def _accounts(username: str | None) -> list[pwd.struct_passwd]:
    """Every account, or just ``username`` (none if unknown)."""
    try:
        return [pwd.getpwnam(str(username))] if username is not None else pwd.getpwall()
    except KeyError:
        return []


def _user_files(
    ctx: QueryContext, username: str | None, relpaths: Iterable[str]
) -> Iterator[tuple[str, Path]]:
    """``(user, file)`` for each user's home and each relative path that exists.

    Users sharing a home (daemons with home ``/``) would list one file twice: the first user in
    the account database keeps it.
    """
    entries = _accounts(username)
    seen: set[Path] = set()
    relpaths = tuple(relpaths)
    for entry in ctx.checked(entries):
        if not entry.pw_dir:
            continue
        home = Path(entry.pw_dir)
        for rel in relpaths:
            file = home / rel
            if file in seen:
                continue
            seen.add(file)
            try:
                if file.is_file():
                    yield entry.pw_name, file
            except OSError as exc:  # e.g. a home we may not traverse
                ctx.warn(f"cannot check {file} ({exc.strerror})")


# --- crontab ------------------------------------------------------------------------------------

#: Where cron daemons look: (location, is the system format with a user column).
CRON_LOCATIONS = (
    ("/etc/crontab", True),
    ("/etc/cron.d/*", True),
    ("/var/spool/cron/crontabs/*", False),  # Debian, Ubuntu
    ("/var/spool/cron/*", False),  # RHEL, Fedora (files only; crontabs/ is a directory)
    ("/var/spool/cron/tabs/*", False),  # SUSE
    ("/usr/lib/cron/tabs/*", False),  # macOS
    ("/var/at/tabs/*", False),  # macOS, BSD
)
CRON_SPECIALS = frozenset(
    {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_ENV = re.compile(r"""\s*["']?[A-Za-z_][A-Za-z0-9_]*["']?\s*=""")
_CRON_FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")


def _is_system_crontab(path: Path) -> bool:
    """/etc/crontab and /etc/cron.d/* name the user on each line; spool files are one user's."""
    return path.parent.name == "cron.d" or (path.name == "crontab" and path.parent.name == "etc")


def parse_crontab(
    text: str, system: bool, default_user: str | None
) -> Iterator[tuple[int, dict[str, Any]] | tuple[int, str]]:
    """``(line_number, row)`` per job, or ``(line_number, problem)`` for a line cron would reject.

    Comments, blank lines and ``NAME=value`` settings are not jobs and are skipped.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _CRON_ENV.match(line):
            continue
        row: dict[str, Any] = dict.fromkeys(_CRON_FIELDS)
        if stripped.startswith("@"):
            parts = stripped.split(None, 2 if system else 1)
            if parts[0] not in CRON_SPECIALS:
                yield number, f"unknown special schedule {parts[0]!r}"
                continue
            row["special"] = parts[0]
            rest = parts[1:]
        else:
            parts = stripped.split(None, 6 if system else 5)
            if len(parts) < 5:
                yield number, "fewer than 5 schedule fields"
                continue
            row.update(zip(_CRON_FIELDS, parts, strict=False))
            row["special"] = None
            rest = parts[5:]
        if system:
            if len(rest) < 2:
                yield number, "no user and command after the schedule"
                continue
            row["user"], row["command"] = rest
        else:
            if not rest:
                yield number, "no command after the schedule"
                continue
            row["user"], row["command"] = default_user, rest[0]
        yield number, row


@table(
    name="crontab",
    description="Cron jobs: /etc/crontab, /etc/cron.d/* and every user's spool crontab.",
    arguments=[
        Arg(
            "pattern",
            "TEXT",
            "A crontab file or glob to read instead of the usual locations.",
        ),
        Arg(
            "format",
            "TEXT",
            "system (a user column after the schedule) or user; default: system for "
            "/etc/crontab and */cron.d/*, user otherwise.",
        ),
        Arg("path", "TEXT", "Only this crontab file."),
    ],
    columns=[
        Col("path", "TEXT", "The crontab file."),
        Col("line_number", "INTEGER", "Line of the job in the file (1-based)."),
        Col("user", "TEXT", "User the job runs as (user crontabs: the file name)."),
        Col("minute", "TEXT", "Schedule field, as written (NULL for @special schedules)."),
        Col("hour", "TEXT", "Schedule field."),
        Col("day_of_month", "TEXT", "Schedule field."),
        Col("month", "TEXT", "Schedule field."),
        Col("day_of_week", "TEXT", "Schedule field."),
        Col("special", "TEXT", "@reboot, @daily ... when used instead of the five fields."),
        Col("command", "TEXT", "The command, as written (an unescaped % starts its stdin)."),
    ],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path, user, special, command FROM crontab() WHERE special = '@reboot'",
        "SELECT * FROM crontab() WHERE command LIKE '%curl%' OR command LIKE '%/tmp/%'",
        "SELECT * FROM crontab('/mnt/evidence/var/spool/cron/crontabs/*')",
    ),
)
def crontab(
    ctx: QueryContext,
    pattern: str | None = None,
    format: str | None = None,
    path: str | None = None,
) -> Iterator[dict[str, Any]]:
    if format is not None and format not in ("system", "user"):
        raise PluginError("crontab", f"format must be 'system' or 'user', not {format!r}")
    files: list[tuple[Path, bool | None]] = []
    if path is not None:
        files = [(Path(path), None)]
    elif pattern is not None:
        files = [(p, None) for p in _expand(str(pattern))]
    else:
        for location, is_system in CRON_LOCATIONS:
            files += [(p, is_system) for p in _expand(location) if p.is_file()]
    for file, known in ctx.checked(files):
        if format is not None:
            system = format == "system"
        else:
            system = _is_system_crontab(file) if known is None else known
        data = _read(ctx, "crontab", file)
        if data is None:
            continue
        text = data.decode("utf-8", "replace")
        for number, job in parse_crontab(text, system, None if system else file.name):
            if isinstance(job, str):
                ctx.warn(f"crontab(): {file}:{number}: {job}; line skipped")
                continue
            yield {"path": path if path is not None else str(file), "line_number": number, **job}


# --- shell_history ------------------------------------------------------------------------------

#: History files under a home directory, and the format each is written in.
HISTORY_FILES = {
    ".bash_history": "bash",
    ".zsh_history": "zsh",
    ".histfile": "zsh",
    ".sh_history": "sh",
    ".ash_history": "sh",
    ".python_history": "python",
    ".local/share/fish/fish_history": "fish",
}
_ZSH_EXTENDED = re.compile(r": *(\d+):(\d+);(.*)", re.DOTALL)
_BASH_TIME = re.compile(r"#(\d+)")
_FISH_ESCAPE = re.compile(r"\\(\\|n)")
_LIBEDIT_ESCAPE = re.compile(r"\\([0-7]{3})")
_ZSH_META = 0x83

HistoryEntry = tuple[int, int | None, str]  # line number, time, command


def _history_format(path: Path, head: bytes) -> str:
    """The format by file name; for other names, by the first line."""
    for name, fmt in HISTORY_FILES.items():
        if path.name == Path(name).name:
            return fmt
    if re.match(rb": *\d+:\d+;", head):
        return "zsh"
    if head.startswith(b"- cmd: "):
        return "fish"
    return "bash"


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def parse_bash_history(data: bytes) -> Iterator[HistoryEntry]:
    """One command per line; a ``#1700000000`` line (HISTTIMEFORMAT set) times the next one."""
    when: int | None = None
    for number, line in enumerate(_lines(data), start=1):
        stamp = _BASH_TIME.fullmatch(line)
        if stamp:
            when = int(stamp.group(1))
        elif line.strip():
            yield number, when, line
            when = None


def _unmetafy(data: bytes) -> bytes:
    """zsh stores bytes 0x83-0x9f and some others as 0x83 then the byte XOR 32."""
    if _ZSH_META not in data:
        return data
    out = bytearray()
    it = iter(data)
    for byte in it:
        out.append((next(it, 0x20) ^ 0x20) if byte == _ZSH_META else byte)
    return bytes(out)


def parse_zsh_history(data: bytes) -> Iterator[HistoryEntry]:
    """Plain or EXTENDED_HISTORY (``: start:elapsed;command``); ``\\`` at the end continues."""
    lines = _lines(_unmetafy(data))
    i = 0
    while i < len(lines):
        number, text = i + 1, lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + "\n" + lines[i]
        i += 1
        match = _ZSH_EXTENDED.fullmatch(text)
        if match:
            yield number, int(match.group(1)), match.group(3)
        elif text.strip():
            yield number, None, text


def parse_fish_history(data: bytes) -> Iterator[HistoryEntry]:
    """fish's YAML-like list: ``- cmd: ...`` then ``  when: <epoch>`` (and ``  paths:``)."""
    entry: list[Any] | None = None
    for number, line in enumerate(_lines(data), start=1):
        if line.startswith("- cmd:"):
            if entry is not None:
                yield entry[0], entry[1], entry[2]
            cmd = _FISH_ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else "\\", line[6:].strip())
            entry = [number, None, cmd]
        elif entry is not None and line.startswith("  when:"):
            with contextlib.suppress(ValueError):
                entry[1] = int(line[7:].strip())
    if entry is not None:
        yield entry[0], entry[1], entry[2]


def parse_python_history(data: bytes) -> Iterator[HistoryEntry]:
    """GNU readline: one line each. libedit (macOS) starts ``_HiStOrY_V2_`` and escapes octal."""
    lines = _lines(data)
    libedit = bool(lines) and lines[0] == "_HiStOrY_V2_"
    for number, line in enumerate(lines, start=1):
        if libedit:
            if number == 1:
                continue
            line = _LIBEDIT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line)
        if line.strip():
            yield number, None, line


_HISTORY_PARSERS = {
    "bash": parse_bash_history,
    "sh": parse_bash_history,
    "zsh": parse_zsh_history,
    "fish": parse_fish_history,
    "python": parse_python_history,
}


@table(
    name="shell_history",
    description="Commands from each user's shell history (bash, zsh, sh/ksh/ash, fish, python).",
    arguments=[
        Arg("username", "TEXT", "Only this user's files (faster than reading every home)."),
        Arg("path", "TEXT", "Only this history file (any location; format from its name)."),
    ],
    columns=[
        Col("username", "TEXT", "Owner: the user whose home holds it (for a given path: owner)."),
        Col("path", "TEXT", "The history file."),
        Col("shell", "TEXT", "Format: bash, zsh, sh, fish or python."),
        Col("line_number", "INTEGER", "Line where the command starts (1-based)."),
        Col(
            "time",
            "INTEGER",
            "When it ran, epoch seconds: bash with HISTTIMEFORMAT, zsh EXTENDED_HISTORY, fish. "
            "NULL when the file does not record it.",
        ),
        Col("command", "TEXT", "The command line."),
    ],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT username, datetime(time, 'unixepoch'), command FROM shell_history() "
        "WHERE command LIKE '%base64%'",
        "SELECT * FROM shell_history WHERE path = '/mnt/evidence/root/.bash_history'",
    ),
)
def shell_history(
    ctx: QueryContext, username: str | None = None, path: str | None = None
) -> Iterator[dict[str, Any]]:
    if path is not None:
        files = [(_owner(Path(path)), Path(path))]
    else:
        files = list(_user_files(ctx, username, HISTORY_FILES))
    for user, file in files:
        data = _read(ctx, "shell_history", file)
        if data is None:
            continue
        fmt = _history_format(file, data[:64])
        for number, when, command in ctx.checked(_HISTORY_PARSERS[fmt](data), every=1024):
            yield {
                "username": user,
                "path": path if path is not None else str(file),
                "shell": fmt,
                "line_number": number,
                "time": when,
                "command": command,
            }


# --- authorized_keys ----------------------------------------------------------------------------

AUTHORIZED_KEYS_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
#: Key types start with one of these; an options field never does.
_KEY_TYPE = re.compile(r"(ssh-|ecdsa-|sk-|rsa-sha2-|x509v3-)\S+")


def split_options(line: str) -> tuple[str | None, str]:
    """``(options, rest)``: options end at the first blank outside double quotes (``\\"`` kept)."""
    if _KEY_TYPE.match(line):
        return None, line
    quoted = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = quoted
        elif ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].lstrip()
    return line, ""


def parse_authorized_keys(text: str) -> Iterator[tuple[int, dict[str, Any]] | tuple[int, str]]:
    """``(line_number, row)`` per key, or ``(line_number, problem)`` for a malformed line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options, rest = split_options(line)
        parts = rest.split(None, 2)
        if len(parts) < 2 or not _KEY_TYPE.fullmatch(parts[0]):
            yield number, "not a key: expected [options] type base64-key [comment]"
            continue
        yield (
            number,
            {
                "options": options,
                "key_type": parts[0],
                "key": parts[1],
                "comment": parts[2] if len(parts) > 2 else None,
            },
        )


def fingerprint_sha256(key: str) -> str:
    """OpenSSH's ``SHA256:`` fingerprint: unpadded base64 of the SHA-256 of the key blob."""
    try:
        blob = base64.b64decode(key, validate=True)
    except ValueError as exc:
        raise ValueError("the key is not valid base64") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


@table(
    name="authorized_keys",
    description="SSH public keys allowed to log in as each user (~/.ssh/authorized_keys{,2}).",
    arguments=[
        Arg("username", "TEXT", "Only this user's files."),
        Arg("path", "TEXT", "Only this file (any location)."),
    ],
    columns=[
        Col("username", "TEXT", "User the key logs in as (for a given path: the file's owner)."),
        Col("path", "TEXT", "The authorized_keys file."),
        Col("line_number", "INTEGER", "Line of the key (1-based)."),
        Col("options", "TEXT", 'Options before the key, as written (command="...",no-pty).'),
        Col("key_type", "TEXT", "ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256 ..."),
        Col("key", "TEXT", "The public key, base64."),
        Col("comment", "TEXT", "Text after the key, often user@host."),
        Col(
            "fingerprint_sha256",
            "TEXT",
            "SHA256:... fingerprint, as ssh-keygen -l prints it.",
            expensive=True,
        ),
    ],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT username, key_type, comment, fingerprint_sha256 FROM authorized_keys()",
        "SELECT * FROM authorized_keys() WHERE options LIKE '%command=%'",
        "SELECT u.username, u.uid, k.comment FROM users() u "
        "JOIN authorized_keys() k ON k.username = u.username WHERE u.uid = 0",
    ),
)
def authorized_keys(
    ctx: QueryContext, username: str | None = None, path: str | None = None
) -> Iterator[dict[str, Any]]:
    if path is not None:
        files = [(_owner(Path(path)), Path(path))]
    else:
        files = list(_user_files(ctx, username, AUTHORIZED_KEYS_FILES))
    for user, file in files:
        data = _read(ctx, "authorized_keys", file)
        if data is None:
            continue
        for number, key in parse_authorized_keys(data.decode("utf-8", "replace")):
            if isinstance(key, str):
                ctx.warn(f"authorized_keys(): {file}:{number}: {key}; line skipped")
                continue
            yield {
                "username": user,
                "path": path if path is not None else str(file),
                "line_number": number,
                **key,
                "fingerprint_sha256": Lazy(fingerprint_sha256, key["key"]),
            }


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [crontab, shell_history, authorized_keys]
