"""``file_changes(paths)``: files created, written, deleted or moved under given paths (Linux).

Built on inotify. Directories are watched, never single files: a file replaced by a rename (as
editors and package managers do) would end a watch on the file itself, and a file that does not
exist yet (``/etc/ld.so.preload``) can only be seen appearing from its directory. A path given as
a file watches its directory for that name alone. The patterns are expanded again every
``rescan`` seconds, so a home or a ``.ssh`` directory made later is watched from then on.
"""

# os functions on str paths on purpose: paths come from the kernel and go to it as text.
# ruff: noqa: PTH111, PTH112, PTH118, PTH119, PTH120, PTH207

from __future__ import annotations

import fnmatch
import glob
import os
import select
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl
from peregrine.plugins import inotify
from peregrine.plugins.files import patterns_argument

#: Directories one query may watch (each costs the kernel about 1 KiB; the user's total is
#: fs.inotify.max_user_watches).
MAX_WATCHES = 10_000
#: How often a wait for the next change looks at the query's cancel and deadline.
WAKE_EVERY = 0.25


@dataclass
class Watch:
    directory: str
    #: Patterns (fnmatch) of the entries of interest; None for all of them.
    names: set[str] | None
    recursive: bool

    def wants(self, name: str) -> bool:
        return self.names is None or any(fnmatch.fnmatchcase(name, p) for p in self.names)


class Watcher:
    """The directories watched for a set of patterns, kept up to date as the tree changes."""

    def __init__(self, ctx: QueryContext, patterns: list[str], recursive: bool) -> None:
        self.ctx = ctx
        self.patterns = patterns
        self.recursive = recursive
        self.inotify = inotify.Inotify()
        self.by_wd: dict[int, Watch] = {}
        self.by_dir: dict[str, int] = {}
        self._full_warned = False

    def scan(self) -> None:
        """Watch what the patterns name now: matching directories whole, and the directories
        that could hold a matching entry for that entry's name (so it is seen appearing)."""
        for pattern in self.patterns:
            matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
            directories = [os.path.normpath(m) for m in matches if os.path.isdir(m)]
            for directory in directories:
                self.watch(directory, None, self.recursive)
            head, tail = os.path.split(os.path.normpath(pattern))
            if directories and not glob.has_magic(tail):
                continue  # a directory named exactly: its own watch is enough
            for parent in glob.glob(head) if glob.has_magic(head) else [head]:
                if os.path.isdir(parent):
                    self.watch(os.path.normpath(parent), {tail}, False)

    def watch(self, directory: str, names: set[str] | None, recursive: bool) -> None:
        wd = self.by_dir.get(directory)
        if wd is not None:
            known = self.by_wd[wd]
            known.names = None if names is None or known.names is None else known.names | names
            if recursive and not known.recursive:
                known.recursive = True
                self._watch_below(directory)
        elif self._add(directory, names, recursive) and recursive:
            self._watch_below(directory)

    def _add(self, directory: str, names: set[str] | None, recursive: bool) -> bool:
        if len(self.by_wd) >= MAX_WATCHES:
            if not self._full_warned:
                self.ctx.warn(f"file_changes(): {MAX_WATCHES} directories watched, no more")
                self._full_warned = True
            return False
        try:
            wd = self.inotify.add_directory(directory)
        except OSError as exc:
            self.ctx.warn(f"file_changes(): cannot watch {directory}: {exc.strerror}")
            return False
        self.by_wd[wd] = Watch(directory, names, recursive)
        self.by_dir[directory] = wd
        return True

    def _watch_below(self, directory: str) -> None:
        for root, dirs, _ in os.walk(directory):
            self.ctx.check()
            for name in dirs:
                path = os.path.join(root, name)
                if path in self.by_dir:
                    self.by_wd[self.by_dir[path]].recursive = True
                    self.by_wd[self.by_dir[path]].names = None
                else:
                    self._add(path, None, True)

    def changes(self) -> Iterator[dict[str, Any]]:
        """Rows for the events waiting now."""
        for event in self.inotify.read():
            if event.mask & inotify.IN_Q_OVERFLOW:
                self.ctx.warn("file_changes(): the kernel's queue overflowed; changes were lost")
                continue
            watch = self.by_wd.get(event.wd)
            if watch is None:
                continue
            if event.mask & inotify.IN_IGNORED:  # the directory went away: rescan may bring it back
                del self.by_wd[event.wd]
                self.by_dir.pop(watch.directory, None)
                continue
            if event.mask & (inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF):
                if watch.names is None:
                    moved = event.mask & inotify.IN_MOVE_SELF
                    yield _row("moved_from" if moved else "deleted", watch.directory, True)
                continue
            action = inotify.action(event.mask)
            if action is None or not watch.wants(event.name):
                continue
            path = os.path.join(watch.directory, event.name)
            is_dir = bool(event.mask & inotify.IN_ISDIR)
            if is_dir and watch.recursive and action in ("created", "moved_to"):
                self.watch(path, None, True)
            yield _row(action, path, is_dir)

    def close(self) -> None:
        self.inotify.close()


def _row(action: str, path: str, is_dir: bool) -> dict[str, Any]:
    try:
        size: int | None = os.lstat(path).st_size
    except OSError:
        size = None
    return {
        "time": time.time(),
        "action": action,
        "path": path,
        "name": os.path.basename(path),
        "directory": os.path.dirname(path),
        "is_dir": int(is_dir),
        "size": size,
    }


@table(
    name="file_changes",
    description=(
        "Event plugin (never ends): a row for each change under the given paths (inotify): an "
        "entry created, modified, written (closed after writing), its attributes changed, "
        "deleted or moved. A directory is watched whole, a file path watches its directory for "
        "that name (so a file that does not exist yet is seen when it appears)."
    ),
    arguments=[
        Arg(
            "paths",
            "TEXT",
            "A path or glob pattern, or a JSON array of them.",
            required=True,
        ),
        Arg(
            "recursive",
            "INTEGER",
            "1: watch the directories below too (new ones as well).",
            default=0,
        ),
        Arg(
            "rescan",
            "REAL",
            "Seconds between expanding the patterns again (0: never).",
            default=10.0,
        ),
    ],
    columns=[
        Col("time", "REAL", "When the change was seen, seconds since the epoch."),
        Col(
            "action",
            "TEXT",
            "created, modified, written, attributes, deleted, moved_from or moved_to.",
        ),
        Col("path", "TEXT", "The entry that changed."),
        Col("name", "TEXT", "Its name."),
        Col("directory", "TEXT", "The directory it is in."),
        Col("is_dir", "INTEGER", "1 for a directory."),
        Col("size", "INTEGER", "Its size just after the change (NULL when gone)."),
    ],
    platforms=("linux",),
    permissions=("FILESYSTEM_READ",),
    examples=("SELECT action, path FROM file_changes('/tmp') LIMIT 1",),
    events=True,
)
def file_changes(
    ctx: QueryContext, paths: Any, recursive: int = 0, rescan: float = 10.0
) -> Iterator[dict[str, Any]]:
    patterns = patterns_argument(paths, "file_changes")
    if rescan is None or float(rescan) < 0:
        raise PluginError("file_changes", "rescan must be 0 (never) or a number of seconds")
    watcher = Watcher(ctx, [os.path.expanduser(p) for p in patterns], bool(recursive))
    try:
        watcher.scan()
        if not watcher.by_wd:
            ctx.warn(f"file_changes(): nothing to watch yet under {', '.join(patterns)}")
        next_scan = time.monotonic() + float(rescan)
        while True:
            wait = WAKE_EVERY if not rescan else min(WAKE_EVERY, next_scan - time.monotonic())
            ready, _, _ = select.select([watcher.inotify.fd], [], [], max(0.0, wait))
            ctx.check()
            if ready:
                yield from watcher.changes()
            if rescan and time.monotonic() >= next_scan:
                watcher.scan()
                next_scan = time.monotonic() + float(rescan)
    finally:
        watcher.close()


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [file_changes]
