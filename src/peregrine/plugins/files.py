"""Files: ``glob`` finds files by pattern, ``stat`` describes a path, ``read_file`` reads bytes.

``glob`` never walks more than its pattern can match. The pattern's literal prefix is used as is
(``/etc/ssh/*`` lists one directory), literal components further on are looked up directly
(``/home/*/.ssh/authorized_keys`` lists ``/home`` and then stats two names per user), and a
directory is only entered when some part of the pattern can still match below it. Brace
alternatives (``/etc/{passwd,group}``) are walked together, so shared directories are read once.

Matching follows the shell, with two deliberate differences for forensics: ``*``, ``?`` and
``**`` match names that start with a dot (hidden files are where things hide), and ``**`` never
enters a symbolic link to a directory unless ``follow_symlinks = 1`` (then loops are detected by
device and inode). Explicit components resolve through symlinks as the shell does, so ``/lib/*``
works where ``/lib`` links to ``/usr/lib``.

Rows describe the entry itself (``lstat``): a symlink is ``type = 'link'``. The hash columns hash
what the path opens to, so a link to a regular file has the file's hashes.
"""

# os functions on str paths on purpose: a Path object per entry would slow the walk down.
# ruff: noqa: PTH100, PTH109, PTH111, PTH114, PTH115, PTH116, PTH118

from __future__ import annotations

import ctypes
import fnmatch
import grp
import itertools
import json
import operator
import os
import pwd
import re
import stat
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins.hashing import file_digest, open_regular

#: Most alternatives one pattern may expand to with braces (``{a,b}{c,d}`` is 4).
MAX_BRACE_EXPANSIONS = 1024
#: ``read_file`` returns at most this much in one row; use ``chunk_size`` for more.
MAX_READ = 64 << 20
DEFAULT_READ = 1 << 20
_CHECK_EVERY = 256

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "link",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}

STAT_COLUMNS = [
    Col("name", "TEXT", "Last component of the path."),
    Col("dirname", "TEXT", "Directory holding the entry."),
    Col("type", "TEXT", "file, dir, link, fifo, socket, char or block (of the entry itself)."),
    Col("size", "INTEGER", "Size in bytes (of a link: the length of its target)."),
    Col("mode", "TEXT", "Permission bits in octal, with setuid/setgid/sticky: '0644', '4755'."),
    Col("mode_string", "TEXT", "Permissions as ls shows them: '-rw-r--r--'."),
    Col("uid", "INTEGER", "Owner's user id."),
    Col("gid", "INTEGER", "Group id."),
    Col("owner", "TEXT", "Owner's user name (NULL if the uid has no name)."),
    Col("group_name", "TEXT", "Group name (NULL if the gid has no name)."),
    Col("inode", "INTEGER", "Inode number."),
    Col("device", "INTEGER", "Device number of the filesystem holding it."),
    Col("nlink", "INTEGER", "Number of hard links."),
    Col("atime", "REAL", "Last access, seconds since the epoch."),
    Col("mtime", "REAL", "Last content change, seconds since the epoch."),
    Col("ctime", "REAL", "Last inode change, seconds since the epoch."),
    Col("btime", "REAL", "Creation (birth) time if the OS and filesystem record it, else NULL."),
    Col("is_link", "INTEGER", "1 for a symbolic link."),
    Col("link_target", "TEXT", "Where a symbolic link points (as written in the link)."),
    Col(
        "md5",
        "TEXT",
        "MD5 of the contents (regular files and links to them).",
        expensive=True,
        hidden=True,
    ),
    Col("sha1", "TEXT", "SHA-1 of the contents.", expensive=True, hidden=True),
    Col("sha256", "TEXT", "SHA-256 of the contents.", expensive=True, hidden=True),
]


# --- stat rows, shared by glob and stat ----------------------------------------------------------


class _Names:
    """uid/gid -> name, looked up once per query (NSS may be a network directory)."""

    def __init__(self) -> None:
        self.users: dict[int, str | None] = {}
        self.groups: dict[int, str | None] = {}

    def owner(self, uid: int) -> str | None:
        if uid not in self.users:
            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = None
        return self.users[uid]

    def group(self, gid: int) -> str | None:
        if gid not in self.groups:
            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = None
        return self.groups[gid]


def _statx_function() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.statx
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
    func.restype = ctypes.c_int
    return func


_statx = _statx_function()
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BTIME = 0x800
_STATX_SIZE = 256  # sizeof(struct statx)
_STATX_BTIME_OFFSET = 80  # struct statx_timestamp stx_btime: s64 seconds, u32 nanoseconds


def birth_time(path: str, follow_symlinks: bool = False) -> float | None:
    """The creation time, from ``statx`` on Linux (Python's stat lacks it) or ``st_birthtime``."""
    if _statx is None:
        try:
            st = os.stat(path, follow_symlinks=follow_symlinks)
        except OSError:
            return None
        value = getattr(st, "st_birthtime", None)
        return None if value is None else float(value)
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    flags = 0 if follow_symlinks else _AT_SYMLINK_NOFOLLOW
    if _statx(_AT_FDCWD, os.fsencode(path), flags, _STATX_BTIME, buf) != 0:
        return None
    mask = struct.unpack_from("<I", buf.raw, 0)[0]
    if not mask & _STATX_BTIME:
        return None  # this filesystem does not record it
    seconds, nanos = struct.unpack_from("<qI", buf.raw, _STATX_BTIME_OFFSET)
    return float(seconds + nanos / 1e9)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


class StatValues:
    """The values of :data:`STAT_COLUMNS` after ``name`` and ``dirname``, in order, from a
    ``stat`` result. Columns the statement does not read are left ``None``: a mode string and
    the ``Lazy`` objects cost more than the ``lstat`` itself."""

    def __init__(
        self, ctx: QueryContext, plugin: str, follow: bool, read: frozenset[str] | None
    ) -> None:
        self.ctx, self.plugin, self.follow = ctx, plugin, follow
        self.names = _Names()
        wanted = {c.name for c in STAT_COLUMNS} if read is None else read
        self.mode, self.mode_string = "mode" in wanted, "mode_string" in wanted
        self.owner, self.group = "owner" in wanted, "group_name" in wanted
        self.btime, self.link_target = "btime" in wanted, "link_target" in wanted
        self.md5, self.sha1, self.sha256 = "md5" in wanted, "sha1" in wanted, "sha256" in wanted

    def __call__(self, path: str, st: os.stat_result) -> tuple[Any, ...]:
        mode = st.st_mode
        kind = _TYPES.get(stat.S_IFMT(mode), "unknown")
        is_link = kind == "link"
        hashable = kind == "file" or is_link
        regular = kind == "file"
        ctx, plugin = self.ctx, self.plugin
        return (
            kind,
            st.st_size,
            f"{mode & 0o7777:04o}" if self.mode else None,
            stat.filemode(mode) if self.mode_string else None,
            st.st_uid,
            st.st_gid,
            Lazy(self.names.owner, st.st_uid) if self.owner else None,
            Lazy(self.names.group, st.st_gid) if self.group else None,
            st.st_ino,
            st.st_dev,
            st.st_nlink,
            st.st_atime,
            st.st_mtime,
            st.st_ctime,
            Lazy(birth_time, path, self.follow) if self.btime else None,
            int(is_link),
            Lazy(_readlink, path) if is_link and self.link_target else None,
            Lazy(file_digest, ctx, path, "md5", plugin, regular) if hashable and self.md5 else None,
            Lazy(file_digest, ctx, path, "sha1", plugin, regular)
            if hashable and self.sha1
            else None,
            Lazy(file_digest, ctx, path, "sha256", plugin, regular)
            if hashable and self.sha256
            else None,
        )


def _split_path(path: str) -> tuple[str, str]:
    head, _, tail = path.rstrip("/").rpartition("/") if path != "/" else ("", "", "/")
    return tail, head or ("/" if path.startswith("/") else ".")


# --- patterns ------------------------------------------------------------------------------------

_LIT, _WILD, _STAR = 0, 1, 2
_MAGIC = re.compile(r"[*?\[]")
Segment = tuple[int, Any]  # (_LIT, name) | (_WILD, compiled regex) | (_STAR, None)
Position = tuple[int, int, int]  # (pattern index, segment index, components ** has consumed)
#: Walker._plan: literal names, wildcards, whether ** reaches, ** matches here, ** goes on below.
_Plan = tuple[
    dict[str, set[Position]],
    list[tuple[re.Pattern[str], Position]],
    bool,
    bool,
    frozenset[Position],
]


def expand_braces(pattern: str, limit: int = MAX_BRACE_EXPANSIONS) -> list[str]:
    """Shell brace alternatives: ``a{b,c{d,e}}`` -> ``abd``... ``{x}`` and unbalanced braces are
    literal. Raises ``ValueError`` past ``limit`` alternatives."""
    out: list[str] = []
    todo = [pattern]
    while todo:
        text = todo.pop()
        found = _first_alternation(text)
        if found is None:
            out.append(text)
            if len(out) > limit:
                raise ValueError(f"braces expand to more than {limit} patterns")
            continue
        start, end, alternatives = found
        todo.extend(text[:start] + alt + text[end + 1 :] for alt in reversed(alternatives))
        if len(todo) > limit:
            raise ValueError(f"braces expand to more than {limit} patterns")
    return list(dict.fromkeys(out))


def _first_alternation(text: str) -> tuple[int, int, list[str]] | None:
    """(start, end, alternatives) of the first ``{...,...}`` group, or ``None``."""
    search = 0
    while (start := text.find("{", search)) >= 0:
        depth, commas = 0, list[int]()
        for j in range(start, len(text)):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    if commas:
                        bounds = [start, *commas, j]
                        return start, j, [text[a + 1 : b] for a, b in itertools.pairwise(bounds)]
                    break
            elif c == "," and depth == 1:
                commas.append(j)
        else:
            return None  # unbalanced: the rest is literal
        search = start + 1
    return None


def _segment(part: str) -> Segment:
    if part == "**":
        return (_STAR, None)
    if _MAGIC.search(part):
        return (_WILD, re.compile(fnmatch.translate(part)))
    return (_LIT, part)


def parse_pattern(pattern: str, root: str | None) -> tuple[str, tuple[Segment, ...]]:
    """Split one (brace-free) pattern into its literal base directory and the segments below.

    Relative patterns are relative to ``root`` (default: the working directory).
    """
    if pattern.startswith("~"):
        pattern = os.path.expanduser(pattern)
    if not pattern.startswith("/"):
        pattern = os.path.join(os.path.abspath(root) if root else os.getcwd(), pattern)
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    first_magic = next((n for n, p in enumerate(parts) if _MAGIC.search(p)), len(parts))
    base = "/" + "/".join(parts[:first_magic])
    segments: list[Segment] = []
    for part in parts[first_magic:]:
        seg = _segment(part)
        if seg[0] == _STAR and segments and segments[-1][0] == _STAR:
            continue  # '**/**' is '**'
        segments.append(seg)
    return base, tuple(segments)


def _is_ancestor(parent: str, child: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def group_patterns(
    parsed: Sequence[tuple[str, tuple[Segment, ...]]],
) -> list[tuple[str, list[tuple[Segment, ...]]]]:
    """Merge patterns whose bases nest, so each directory is walked (and each path found) once.

    Groups come out in the order their first pattern was given.
    """
    groups: dict[str, list[tuple[Segment, ...]]] = {}
    first: dict[str, int] = {}
    order = sorted(range(len(parsed)), key=lambda n: len(parsed[n][0]))
    for n in order:
        base, segs = parsed[n]
        home = next((b for b in groups if _is_ancestor(b, base)), None)
        if home is None:
            groups[base], first[base] = [segs], n
            continue
        extra = [p for p in base[len(home) :].split("/") if p]
        groups[home].append(tuple((_LIT, p) for p in extra) + segs)
        first[home] = min(first[home], n)
    return sorted(groups.items(), key=lambda g: first[g[0]])


# --- the walk ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Found:
    """One matched entry. ``entry`` is set when it came from ``scandir`` (its stat is cached)."""

    path: str
    name: str
    dirname: str
    entry: os.DirEntry[str] | None
    lstat: os.stat_result | None

    def stat(self) -> os.stat_result:
        if self.lstat is None:
            self.lstat = (
                self.entry.stat(follow_symlinks=False)
                if self.entry is not None
                else os.lstat(self.path)
            )
        return self.lstat

    def kind(self) -> str:
        """The entry's type, from ``readdir``'s ``d_type`` where the filesystem gives it (no
        ``stat``: what lets ``find -type f`` walk fast)."""
        entry = self.entry
        if entry is not None:
            if entry.is_file(follow_symlinks=False):
                return "file"
            if entry.is_dir(follow_symlinks=False):
                return "dir"
            if entry.is_symlink():
                return "link"
        return _TYPES.get(stat.S_IFMT(self.stat().st_mode), "unknown")


#: glob's columns that need no ``stat`` (type comes from ``d_type``), and the values of the
#: others in a row whose statement reads none of them (added with ``+``: (a, b) + _UNREAD
#: takes half the time of (a, b, *_UNREAD)).
_NO_STAT_COLUMNS = frozenset({"path", "name", "dirname", "type"})
_UNREAD = (None,) * (len(STAT_COLUMNS) - 3)
_KINDS = frozenset({*_TYPES.values(), "unknown"})


class GlobRows:
    """Turns what the walk matched into glob's rows: ``stat`` only when a column read needs it,
    directories left out with ``include_dirs = 0``, only one type with ``WHERE type = ...``."""

    def __init__(
        self, ctx: QueryContext, include_dirs: bool, wanted_type: str | None, every_type: bool
    ) -> None:
        read = ctx.columns_read
        self.ctx = ctx
        self.stat_each = read is None or not read <= _NO_STAT_COLUMNS
        self.values = StatValues(ctx, "glob", False, read)
        kinds = _KINDS if every_type else frozenset({wanted_type})
        #: The types a row may have.
        self.kinds = kinds if include_dirs else kinds - {"dir"}

    def row(self, found: Found) -> tuple[Any, ...] | None:
        """The row of ``found``, or ``None`` (left out, or gone: then with a warning)."""
        try:
            kind = found.kind()  # from d_type if it can: a type filter then stats no other type
            if kind not in self.kinds:
                return None
            if not self.stat_each:
                return (found.path, found.name, found.dirname, kind) + _UNREAD  # noqa: RUF005
            values = self.values(found.path, found.stat())
        except FileNotFoundError:
            self.ctx.warn(f"glob(): {found.path} vanished during the walk")
            return None
        except OSError as exc:
            self.ctx.warn(f"glob(): cannot stat {found.path}: {exc.strerror or exc}")
            return None
        if values[0] != kind and values[0] not in self.kinds:
            return None  # replaced by another type since it was listed
        return (found.path, found.name, found.dirname) + values  # noqa: RUF005


class _Below(tuple[str, frozenset["Position"], frozenset[tuple[int, int]]]):
    """A directory to walk next: (path, positions, ancestors for loop detection)."""

    __slots__ = ()


class Walker:
    """Matches one group of patterns (sharing a base directory) against the filesystem."""

    def __init__(
        self,
        ctx: QueryContext,
        base: str,
        patterns: Sequence[tuple[Segment, ...]],
        max_depth: int,
        follow_symlinks: bool,
        one_filesystem: bool,
        rows: GlobRows | None = None,
    ) -> None:
        self.ctx = ctx
        self.rows = rows if rows is not None else GlobRows(ctx, True, None, True)
        self.base = base
        self.patterns = list(patterns)
        self.max_depth = max_depth
        self.follow = follow_symlinks
        self.one_fs = one_filesystem
        self.base_dev: int | None = None
        self.seen = 0
        self._plans: dict[frozenset[Position], _Plan] = {}

    # Positions: which segment of which pattern the next path component must match.

    def _close(self, positions: Iterable[Position]) -> frozenset[Position]:
        """Add the positions reachable without consuming a component (``**`` matching nothing)."""
        out = set(positions)
        todo = list(out)
        while todo:
            p, i, _ = todo.pop()
            segs = self.patterns[p]
            if i < len(segs) and segs[i][0] == _STAR and (p, i + 1, 0) not in out:
                out.add((p, i + 1, 0))
                todo.append((p, i + 1, 0))
        return frozenset(out)

    def _live(self, positions: Iterable[Position]) -> frozenset[Position]:
        """Positions that can still consume a component below a directory."""
        out = []
        for p, i, n in positions:
            segs = self.patterns[p]
            if i < len(segs) and (segs[i][0] != _STAR or n < self.max_depth):
                out.append((p, i, n))
        return frozenset(out)

    def _terminal(self, positions: Iterable[Position]) -> bool:
        return any(i == len(self.patterns[p]) for p, i, _ in positions)

    def walk(self) -> Iterator[Sequence[tuple[Any, ...]]]:
        """The rows of every match in batches, depth first, each directory's entries in name
        order."""
        start = self._live(self._close((p, 0, 0) for p in range(len(self.patterns))))
        if any(not segs for segs in self.patterns):
            found = self._literal(self.base)  # a pattern with no wildcard names one path
            row = self.rows.row(found) if found is not None else None
            if row is not None:
                yield (row,)
        if not start:
            return
        try:
            base_st = os.stat(self.base)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            self.ctx.warn(f"glob(): cannot read {self.base}: {exc.strerror or exc}")
            return
        if not stat.S_ISDIR(base_st.st_mode):
            return
        self.base_dev = base_st.st_dev
        chain = frozenset({(base_st.st_dev, base_st.st_ino)}) if self.follow else frozenset()
        # Each directory's list holds its matches in order (lists of rows made from d_type, or
        # a Found whose row needs a stat: made now, so a file gone since the listing is not a
        # row) and, right after a directory's own match, the _Below that enters it.
        row_of = self.rows.row
        stack = [iter(self._children(self.base, start, chain))]
        while stack:
            for item in stack[-1]:
                kind = type(item)
                if kind is list:
                    yield item
                elif kind is Found:
                    row = row_of(item)
                    if row is not None:
                        yield (row,)
                else:
                    self.ctx.check()
                    stack.append(iter(self._children(*item)))
                    break
            else:
                stack.pop()

    def _literal(self, path: str) -> Found | None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            self.ctx.warn(f"glob(): cannot stat {path}: {exc.strerror or exc}")
            return None
        name, dirname = _split_path(path)
        return Found(path, name, dirname, None, st)

    def _plan(self, positions: frozenset[Position]) -> _Plan:
        """What the entries of a directory reached at ``positions`` are matched against: the
        same for every directory at the same depth of a ``**``, so it is made once."""
        literals: dict[str, set[Position]] = {}
        wildcards: list[tuple[re.Pattern[str], Position]] = []
        star: set[Position] = set()
        for p, i, n in positions:
            kind, value = self.patterns[p][i]
            if kind == _LIT:
                literals.setdefault(value, set()).add((p, i + 1, 0))
            elif kind == _WILD:
                wildcards.append((value, (p, i + 1, 0)))
            else:
                star.add((p, i, n + 1))
        star_next = self._close(star)
        return literals, wildcards, bool(star), self._terminal(star_next), self._live(star_next)

    def _children(
        self, dirpath: str, positions: frozenset[Position], chain: frozenset[tuple[int, int]]
    ) -> list[Any]:
        """``dirpath``'s matching entries (rows or :class:`Found`), each followed by a
        :class:`_Below` when the walk goes on inside it. Listed eagerly so no directory stays
        open."""
        plan = self._plans.get(positions)
        if plan is None:
            plan = self._plans[positions] = self._plan(positions)
        literals, wildcards, star, star_match, star_live = plan
        prefix = dirpath if dirpath.endswith("/") else dirpath + "/"
        empty: frozenset[Position] = frozenset()

        candidates: list[tuple[str, os.DirEntry[str] | None, frozenset[Position]]] = []
        if wildcards or star:
            try:
                with os.scandir(dirpath) as it:
                    entries = list(it)
            except (FileNotFoundError, NotADirectoryError) as exc:
                self.ctx.warn(f"glob(): {dirpath} vanished during the walk: {exc.strerror}")
                return []
            except OSError as exc:
                self.ctx.warn(f"glob(): cannot list {dirpath}: {exc.strerror or exc}")
                return []
            if self.seen // _CHECK_EVERY != (self.seen + len(entries)) // _CHECK_EVERY:
                self.ctx.check()
            self.seen += len(entries)
            if not literals and not wildcards:  # only '**' here: every entry is a candidate
                entries.sort(key=_name_of)
                return self._star_children(entries, dirpath, star_match, star_live, chain)
            for entry in entries:
                name = entry.name
                explicit: set[Position] = set(literals.get(name, ()))
                for regex, nxt in wildcards:
                    if regex.match(name):
                        explicit.add(nxt)
                if explicit:
                    candidates.append((name, entry, self._close(explicit)))
                elif star:
                    candidates.append((name, entry, empty))
            candidates.sort(key=_first)
        else:
            for name in sorted(literals):
                candidates.append((name, None, self._close(literals[name])))

        out: list[Any] = []
        for name, dir_entry, explicit_next in candidates:
            path = prefix + name
            found = Found(path, name, dirpath, dir_entry, None)
            if dir_entry is None:  # a literal name: look it up
                try:
                    found.lstat = os.lstat(path)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as exc:
                    self.ctx.warn(f"glob(): cannot stat {path}: {exc.strerror or exc}")
                    continue
            if explicit_next:
                below = self._descend(found, self._live(explicit_next), star_live, chain)
            elif (
                dir_entry is not None
                and not dir_entry.is_dir(follow_symlinks=False)
                and not dir_entry.is_symlink()
            ):
                below = None  # nothing to enter (d_type: no stat)
            else:
                below = self._descend(found, empty, star_live, chain)
            if below is _VANISHED:
                continue
            if star_match or self._terminal(explicit_next):
                out.append(found)
            if below is not None:
                out.append(below)
        return out

    def _star_children(
        self,
        entries: list[os.DirEntry[str]],
        dirpath: str,
        matched: bool,
        live: frozenset[Position],
        chain: frozenset[tuple[int, int]],
    ) -> list[Any]:
        """``_children`` where only ``**`` reaches: the hot loop of a tree walk, kept short. A
        regular file (by ``d_type``) is not looked at again, and when no column read needs a
        ``stat`` the rows of files, directories and links are made here, straight from the
        ``DirEntry`` (no ``Found``), in runs handed on as one batch."""
        out: list[Any] = []
        run: list[tuple[Any, ...]] = []
        rows = self.rows
        plain = matched and not rows.stat_each
        plain_files = plain and "file" in rows.kinds
        no_stat = frozenset[Position]()
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                if plain_files:  # entry.path is prefix + name, already made by scandir
                    run.append((entry.path, entry.name, dirpath, "file") + _UNREAD)  # noqa: RUF005
                elif matched and not plain:
                    if run:
                        out.append(run)
                        run = []
                    out.append(Found(entry.path, entry.name, dirpath, entry, None))
                continue
            name = entry.name
            found = Found(entry.path, name, dirpath, entry, None)
            below = None
            is_dir = entry.is_dir(follow_symlinks=False)
            kind = "dir" if is_dir else "link" if entry.is_symlink() else None
            if kind is not None:
                below = self._descend(found, no_stat, live, chain)
                if below is _VANISHED:
                    continue
            if plain and kind is not None:
                if kind in rows.kinds:
                    run.append((found.path, name, dirpath, kind) + _UNREAD)  # noqa: RUF005
            elif matched:
                if run:
                    out.append(run)
                    run = []
                out.append(found)
            if below is not None:
                if run:
                    out.append(run)
                    run = []
                out.append(below)
        if run:
            out.append(run)
        return out

    def _descend(
        self,
        found: Found,
        live_explicit: frozenset[Position],
        live_star: frozenset[Position],
        chain: frozenset[tuple[int, int]],
    ) -> Any:
        """A :class:`_Below` to walk below ``found``, ``None``, or ``_VANISHED``."""
        if not live_explicit and not live_star:
            return None
        entry = found.entry
        try:
            if entry is not None:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_link = not is_dir and entry.is_symlink()
            else:
                mode = found.stat().st_mode
                is_dir, is_link = stat.S_ISDIR(mode), stat.S_ISLNK(mode)
            if not is_dir and not is_link:
                return None
            positions = live_explicit | live_star
            target: os.stat_result | None = None
            if is_link:
                if not self.follow:
                    positions = live_explicit  # '**' does not enter linked directories
                    if not positions:
                        return None
                try:
                    target = os.stat(found.path)
                except OSError:
                    return None  # dangling link
                if not stat.S_ISDIR(target.st_mode):
                    return None
            elif self.one_fs or self.follow:
                target = found.stat()
            if target is not None and self.one_fs and target.st_dev != self.base_dev:
                return None
            if self.follow and target is not None:
                key = (target.st_dev, target.st_ino)
                if key in chain:
                    self.ctx.warn(f"glob(): {found.path} loops back to a directory above it")
                    return None
                chain = chain | {key}
            return _Below((found.path, positions, chain))
        except FileNotFoundError:
            self.ctx.warn(f"glob(): {found.path} vanished during the walk")
            return _VANISHED


_VANISHED = object()
_name_of = operator.attrgetter("name")
_first = operator.itemgetter(0)


def patterns_argument(pattern: Any, plugin: str = "glob") -> list[str]:
    """One pattern, or a JSON array of them (an artifact's list parameter)."""
    text = os.fsdecode(pattern) if isinstance(pattern, bytes) else str(pattern)
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PluginError(plugin, f"pattern looks like a JSON array but is not: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PluginError(plugin, "a JSON pattern must be an array of strings")
        if not value:
            return []  # an empty list (e.g. an artifact's list parameter left empty) finds nothing
        patterns = value
    else:
        patterns = [text]
    if not patterns or any(not p.strip() for p in patterns):
        raise PluginError(plugin, f"pattern must not be empty; e.g. {plugin}('/etc/*.conf')")
    return patterns


def _flag(plugin: str, name: str, value: Any) -> bool:
    if value in (0, 1, True, False, "0", "1"):
        return bool(int(value))
    raise PluginError(plugin, f"{name} must be 0 or 1, not {value!r}")


@table(
    name="glob",
    description=(
        "Files and directories matching shell patterns (*, ?, [a-z], {a,b}, and ** for any depth), "
        "with their metadata; hashes are computed only when selected."
    ),
    batches=True,
    arguments=[
        Arg(
            "pattern",
            "TEXT",
            "Shell pattern, e.g. '/etc/**/*.conf', or a JSON array of patterns. '*' matches "
            "dot-files too; '**' matches any number of directories (not the base itself).",
            required=True,
        ),
        Arg("root", "TEXT", "Directory that relative patterns start from (default: working dir)."),
        Arg("max_depth", "INTEGER", "How many directory levels one '**' may match.", default=64),
        Arg(
            "follow_symlinks",
            "INTEGER",
            "1 to let '**' enter symlinked directories (loops are detected and skipped).",
            default=0,
        ),
        Arg(
            "one_filesystem",
            "INTEGER",
            "1 to stay on the base's filesystem (like find -xdev).",
            default=0,
        ),
        Arg("include_dirs", "INTEGER", "0 to return only non-directories.", default=1),
        Arg(
            "type",
            "TEXT",
            "Filter: `WHERE type = 'file'` makes rows of that type only (the walk still enters "
            "every directory the pattern reaches).",
            exact=True,
        ),
    ],
    columns=[Col("path", "TEXT", "Full path of the entry."), *STAT_COLUMNS],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path, size, mtime FROM glob('/etc/*.conf')",
        "SELECT path, sha256 FROM glob('/usr/bin/**') WHERE type = 'file'",
        "SELECT path FROM glob('/home/*/.ssh/{authorized_keys,id_*}')",
        "SELECT path, mode FROM glob('/**', 1, 64, 0, 1) WHERE mode LIKE '4%' AND type = 'file'",
        "SELECT u.username, g.path FROM users() u JOIN glob(u.home || '/.*') g",
    ),
)
def glob(
    ctx: QueryContext,
    pattern: Any,
    root: str | None = None,
    max_depth: int = 64,
    follow_symlinks: int = 0,
    one_filesystem: int = 0,
    include_dirs: int = 1,
    type: Any = None,
) -> Iterator[Sequence[tuple[Any, ...]]]:
    try:
        depth = int(max_depth if max_depth is not None else 64)
    except (TypeError, ValueError):
        raise PluginError("glob", f"max_depth must be a whole number, not {max_depth!r}") from None
    if depth < 0:
        raise PluginError("glob", f"max_depth must be 0 or more, not {depth}")
    follow = _flag("glob", "follow_symlinks", follow_symlinks)
    one_fs = _flag("glob", "one_filesystem", one_filesystem)
    dirs = _flag("glob", "include_dirs", include_dirs)
    parsed: list[tuple[str, tuple[Segment, ...]]] = []
    for text in patterns_argument(pattern):
        try:
            alternatives = expand_braces(text)
        except ValueError as exc:
            raise PluginError("glob", f"{text!r}: {exc}") from None
        parsed.extend(parse_pattern(alt, root) for alt in alternatives)
    # As SQLite's `=` compares: a number or a blob is never equal to a type's name.
    every_type = type is None
    if not every_type and not isinstance(type, str):
        return iter(())
    rows = GlobRows(ctx, dirs, type, every_type)  # yielded in batches: see TablePlugin
    walks: Iterator[Iterator[Sequence[tuple[Any, ...]]]] = (
        Walker(ctx, base, segments, depth, follow, one_fs, rows).walk()
        for base, segments in group_patterns(parsed)
    )
    return itertools.chain.from_iterable(walks)


@table(
    name="stat",
    description="Metadata of one path (no row if it does not exist); hashes only when selected.",
    arguments=[
        Arg("path", "TEXT", "Path to describe; select it as a column by naming it.", required=True),
        Arg(
            "follow_symlinks",
            "INTEGER",
            "1 to describe what a symlink points to instead of the link itself.",
            default=0,
        ),
    ],
    columns=STAT_COLUMNS,
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT path, mode, owner, mtime FROM stat('/etc/shadow')",
        "SELECT p.pid, s.mtime, s.sha256 FROM pslist() p JOIN stat(p.exe) s",
        'SELECT j.value AS path, s.size FROM json_each(\'["/etc/hosts", "/etc/passwd"]\') j '
        "JOIN stat(j.value) s",
    ),
)
def stat_table(ctx: QueryContext, path: Any, follow_symlinks: int = 0) -> Iterator[tuple[Any, ...]]:
    follow = _flag("stat", "follow_symlinks", follow_symlinks)
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if not name:
        return
    try:
        st = os.stat(name, follow_symlinks=follow)
        is_link = follow and os.path.islink(name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        ctx.warn(f"stat(): cannot stat {name}: {exc.strerror or exc}")
        return
    base, dirname = _split_path(name)
    values = list(StatValues(ctx, "stat", follow, ctx.columns_read)(name, st))
    if is_link:
        values[15] = 1  # is_link describes the path even when the row describes its target
        values[16] = Lazy(_readlink, name)
    yield (base, dirname, *values)


def _int_arg(plugin: str, name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise PluginError(plugin, f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise PluginError(plugin, f"{name} must be {minimum} or more, not {number}")
    return number


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@table(
    name="read_file",
    description=(
        "Bytes of a file: one row of up to 1 MiB from an offset, or one row per chunk. "
        "No row for a missing path; a directory or special file gives no row and a warning."
    ),
    arguments=[
        Arg("path", "TEXT", "File to read (regular file or block device).", required=True),
        Arg("offset", "INTEGER", "Where to start; negative counts from the end.", default=0),
        Arg(
            "length",
            "INTEGER",
            f"Bytes to read: default 1 MiB, at most {MAX_READ >> 20} MiB; with chunk_size, "
            "default to the end of the file.",
        ),
        Arg(
            "chunk_size",
            "INTEGER",
            f"Return one row per chunk of this many bytes (at most {MAX_READ >> 20} MiB).",
        ),
    ],
    columns=[
        Col("data_offset", "INTEGER", "File offset of the first byte in data."),
        Col("data_length", "INTEGER", "Bytes in data (fewer than asked at the end of the file)."),
        Col("data", "BLOB", "The bytes."),
        Col(
            "text",
            "TEXT",
            "The bytes as UTF-8, invalid bytes replaced.",
            expensive=True,
            hidden=True,
        ),
    ],
    platforms=("linux", "darwin"),
    permissions=("FILESYSTEM_READ",),
    examples=(
        "SELECT text FROM read_file('/etc/hostname')",
        "SELECT hex(data) FROM read_file('/bin/ls', 0, 4)",
        "SELECT g.path FROM glob('/tmp/**') g JOIN read_file(g.path, 0, 4) r "
        "WHERE g.type = 'file' AND r.data = x'7f454c46'",
        "SELECT data_offset, length(data) FROM read_file('/var/log/syslog', 0, NULL, 65536)",
    ),
)
def read_file(
    ctx: QueryContext,
    path: Any,
    offset: int = 0,
    length: int | None = None,
    chunk_size: int | None = None,
) -> Iterator[tuple[Any, ...]]:
    start = _int_arg("read_file", "offset", 0 if offset is None else offset, -(1 << 62))
    chunk = None if chunk_size is None else _int_arg("read_file", "chunk_size", chunk_size, 1)
    if chunk is not None and chunk > MAX_READ:
        raise PluginError("read_file", f"chunk_size is at most {MAX_READ} bytes (64 MiB)")
    want = None if length is None else _int_arg("read_file", "length", length, 0)
    if chunk is None:
        want = DEFAULT_READ if want is None else want
        if want > MAX_READ:
            raise PluginError(
                "read_file",
                f"length {want} is over the {MAX_READ >> 20} MiB limit for one row; "
                "give chunk_size to read more as several rows",
            )
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    fd = _open_for_read(ctx, name)
    if fd is None:
        return
    try:
        if start < 0:
            start = max(0, os.fstat(fd).st_size + start)
        os.lseek(fd, start, os.SEEK_SET)
        position = start
        while want is None or position - start < want:
            ctx.check()
            size = chunk if chunk is not None else want
            if want is not None:
                size = min(size or 0, want - (position - start))
            data = _read_up_to(fd, size or 0)
            if not data:
                if position == start:
                    yield (start, 0, b"", "")  # the file exists and is empty there
                return
            yield (position, len(data), data, Lazy(_decode, data))
            position += len(data)
            if chunk is None:
                return
    except OSError as exc:
        ctx.warn(f"read_file(): cannot read {name}: {exc.strerror or exc}")
    finally:
        os.close(fd)


def _open_for_read(ctx: QueryContext, name: str) -> int | None:
    """A descriptor for a regular file or block device; other types warn and give ``None``."""
    try:
        st = os.stat(name)
        if stat.S_ISREG(st.st_mode):
            return open_regular(name, known_regular=True)
        if stat.S_ISBLK(st.st_mode):
            return os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        ctx.warn(f"read_file(): cannot read {name}: {exc.strerror or exc}")
        return None
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), "special file")
    ctx.warn(f"read_file(): {name} is a {kind}, not a file; nothing read")
    return None


def _read_up_to(fd: int, size: int) -> bytes:
    """Read ``size`` bytes unless the file ends first (files in /proc return short reads)."""
    parts = []
    while size > 0:
        data = os.read(fd, size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [glob, stat_table, read_file]
