"""How ``glob`` walks: shell patterns matched against the filesystem, one directory at a time.

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

Where only ``**`` reaches (the bulk of a tree walk) the rows are made straight from ``scandir``'s
entries, with no ``stat`` unless a column read needs one, and handed over a directory at a time.
"""

# os functions on str paths on purpose: a Path object per entry would slow the walk down.
# ruff: noqa: PTH100, PTH109, PTH111, PTH116, PTH118

from __future__ import annotations

import fnmatch
import itertools
import operator
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.plugins.stat_rows import ENTRY_TYPES, STAT_COLUMNS, StatValues, split_path

#: Most alternatives one pattern may expand to with braces (``{a,b}{c,d}`` is 4).
MAX_BRACE_EXPANSIONS = 1024
_CHECK_EVERY = 256


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
        return ENTRY_TYPES.get(stat.S_IFMT(self.stat().st_mode), "unknown")


#: glob's columns that need no ``stat`` (type comes from ``d_type``), and the values of the
#: others in a row whose statement reads none of them (added with ``+``: (a, b) + _UNREAD
#: takes half the time of (a, b, *_UNREAD)).
_NO_STAT_COLUMNS = frozenset({"path", "name", "dirname", "type"})
_UNREAD = (None,) * (len(STAT_COLUMNS) - 3)
_KINDS = frozenset({*ENTRY_TYPES.values(), "unknown"})


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
        name, dirname = split_path(path)
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
