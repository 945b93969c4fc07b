"""Run a program on the endpoint: ``execve`` (one row with its output) and ``execve_lines``.

Both need the ``EXECVE`` permission. The program is started directly from its argument vector,
never through a shell, in a session of its own so that a time-out kills it *and* everything it
started (``sh -c 'sleep 30'`` leaves no ``sleep`` behind). The child is polled while it runs, so
the query's deadline and cancellation stop it too. Background processes the program leaves in its
session are killed half a second after it exits (a program that wants to outlive the query must
start its own session).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from peregrine.engine.context import QueryContext
from peregrine.engine.errors import PluginError
from peregrine.engine.registry import Arg, Col, Plugin, table
from peregrine.hookspecs import hookimpl

_POLL = 0.05
_ORPHAN_GRACE = 0.5
_READ = 65536
_DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024

_ARGV_DOC = (
    'Program and arguments as a JSON array, e.g. \'["ls", "-l", "/tmp"]\'. A plain string is '
    "split into words like a POSIX shell would (shlex), but no shell runs: no pipes, globs or "
    "$VARS."
)
_ENV_DOC = "JSON object of environment variables to set on top of the agent's (null removes one)."


def parse_argv(plugin: str, argv: Any) -> list[str]:
    """The argument vector from a JSON array or, failing that, a shell-like word string."""
    text = str(argv).strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PluginError(
                plugin, f"argv looks like a JSON array but is not valid: {exc}"
            ) from exc
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            raise PluginError(plugin, "argv must be a JSON array of strings")
        words = [str(v) for v in value]
    else:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise PluginError(plugin, f"cannot split argv {text!r}: {exc}") from exc
    if not words:
        raise PluginError(plugin, "argv is empty: give at least the program to run")
    return words


def _parse_env(plugin: str, env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    try:
        value = json.loads(str(env))
    except ValueError as exc:
        raise PluginError(plugin, f"env must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise PluginError(plugin, "env must be a JSON object of name -> value")
    merged = dict(os.environ)
    for name, item in value.items():
        if item is None:
            merged.pop(name, None)
        else:
            merged[str(name)] = str(item)
    return merged


def _positive(plugin: str, name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PluginError(plugin, f"{name} must be a number, not {value!r}") from None
    if number <= 0:
        raise PluginError(plugin, f"{name} must be more than 0, not {value!r}")
    return number


class Child:
    """A started program with non-blocking reads of its stdout and stderr."""

    def __init__(
        self, plugin: str, argv: list[str], cwd: str | None, env: dict[str, str] | None
    ) -> None:
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            if cwd is not None and not Path(cwd).is_dir():
                raise PluginError(plugin, f"cwd {cwd!r} is not a directory") from exc
            raise PluginError(
                plugin, f"program {argv[0]!r} not found (give a full path or one on PATH)"
            ) from exc
        except PermissionError as exc:
            raise PluginError(plugin, f"cannot run {argv[0]!r}: permission denied") from exc
        except OSError as exc:
            raise PluginError(plugin, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
        self.exited: float | None = None
        self.selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream in (self.proc.stdout, self.proc.stderr):
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ)

    @property
    def open_streams(self) -> int:
        return len(self.selector.get_map())

    def read(self, wait: float) -> list[tuple[IO[bytes], bytes]]:
        """Data that arrived within ``wait`` seconds; ``b""`` marks a stream that closed."""
        out: list[tuple[IO[bytes], bytes]] = []
        for key, _events in self.selector.select(wait):
            stream: IO[bytes] = key.fileobj  # type: ignore[assignment]
            try:
                data = os.read(stream.fileno(), _READ)
            except BlockingIOError:
                continue
            if not data:
                self.selector.unregister(stream)
            out.append((stream, data))
        return out

    def kill(self) -> None:
        """Kill the program and everything in its session.

        Even after the leader exited, children it left in the session may hold our pipes open.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def reap_orphans(self) -> None:
        """Once the program exited, kill what it left behind holding our pipes (after a grace).

        Otherwise ``sh -c 'sleep 600 &'`` would keep the query waiting for end-of-output.
        """
        if self.proc.poll() is None or not self.open_streams:
            return
        if self.exited is None:
            self.exited = time.monotonic()
        elif time.monotonic() - self.exited > _ORPHAN_GRACE:
            self.kill()

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        self.selector.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _start(
    plugin: str, argv: Any, cwd: Any, env: Any, timeout: Any, max_output: Any
) -> tuple[Child, float, int]:
    words = parse_argv(plugin, argv)
    limit = _positive(plugin, "timeout", 60 if timeout is None else timeout)
    cap = int(
        _positive(plugin, "max_output", _DEFAULT_MAX_OUTPUT if max_output is None else max_output)
    )
    environment = _parse_env(plugin, env)
    return Child(plugin, words, None if cwd is None else str(cwd), environment), limit, cap


_COMMON_ARGS = [
    Arg("argv", "TEXT", _ARGV_DOC, required=True),
    Arg("cwd", "TEXT", "Working directory for the program (default: the agent's)."),
    Arg(
        "timeout",
        "REAL",
        "Seconds before the program is killed (also the query's deadline).",
        default=60,
    ),
    Arg(
        "max_output",
        "INTEGER",
        "Most bytes kept of stdout and of stderr (default 10 MiB).",
        default=_DEFAULT_MAX_OUTPUT,
    ),
    Arg("env", "JSON", _ENV_DOC),
]


@table(
    name="execve",
    description=(
        "Run a program (no shell) and return one row with its output, exit code and timing. "
        "Needs the EXECVE permission."
    ),
    arguments=_COMMON_ARGS,
    columns=[
        Col(
            "stdout",
            "TEXT",
            "Standard output (UTF-8, bad bytes replaced), at most max_output bytes.",
        ),
        Col("stderr", "TEXT", "Standard error, likewise."),
        Col("return_code", "INTEGER", "Exit status; negative signal number if it was killed."),
        Col("pid", "INTEGER", "Process id the program ran as."),
        Col("duration", "REAL", "Seconds it ran."),
        Col("truncated", "INTEGER", "1 if stdout or stderr was longer than max_output."),
        Col("timed_out", "INTEGER", "1 if it was killed because it ran past timeout."),
    ],
    platforms=("linux", "darwin"),
    permissions=("EXECVE",),
    examples=(
        'SELECT stdout, return_code FROM execve(\'["uname", "-a"]\')',
        "SELECT stdout FROM execve('ls -la /tmp')",
        "SELECT stdout FROM execve WHERE argv = '[\"id\"]' AND cwd = '/' AND timeout = 5",
    ),
)
def execve(
    ctx: QueryContext,
    argv: str,
    cwd: str | None = None,
    timeout: float = 60,
    max_output: int = _DEFAULT_MAX_OUTPUT,
    env: str | None = None,
) -> Iterator[dict[str, Any]]:
    ctx.check()
    child, limit, cap = _start("execve", argv, cwd, env, timeout, max_output)
    proc = child.proc
    buffers: dict[Any, bytearray] = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    truncated = timed_out = False
    try:
        while child.open_streams or proc.poll() is None:
            ctx.check()
            if time.monotonic() - child.started > limit:
                timed_out = True
                child.kill()
                limit = float("inf")  # now just drain what is left
            child.reap_orphans()
            for stream, data in child.read(_POLL):
                buffer = buffers[stream]
                room = cap - len(buffer)
                if len(data) > room:
                    truncated = True
                buffer += data[: max(0, room)]
        return_code = proc.wait()
    finally:
        child.close()
    yield {
        "stdout": bytes(buffers[proc.stdout]).decode("utf-8", "replace"),
        "stderr": bytes(buffers[proc.stderr]).decode("utf-8", "replace"),
        "return_code": return_code,
        "pid": proc.pid,
        "duration": time.monotonic() - child.started,
        "truncated": int(truncated),
        "timed_out": int(timed_out),
    }


@table(
    name="execve_lines",
    description=(
        "Run a program (no shell) and stream its standard output line by line while it runs; "
        "for huge outputs. The program is killed when the query stops reading (LIMIT). "
        "Needs the EXECVE permission."
    ),
    arguments=_COMMON_ARGS,
    columns=[
        Col("line_number", "INTEGER", "Line number of standard output, from 1."),
        Col("line", "TEXT", "The line without its newline (UTF-8, bad bytes replaced)."),
        Col("pid", "INTEGER", "Process id the program ran as."),
    ],
    platforms=("linux", "darwin"),
    permissions=("EXECVE",),
    examples=(
        'SELECT line FROM execve_lines(\'["journalctl", "-o", "json"]\') LIMIT 100',
        "SELECT json_extract(line, '$.MESSAGE') FROM execve_lines('journalctl -o json -n 1000')",
    ),
)
def execve_lines(
    ctx: QueryContext,
    argv: str,
    cwd: str | None = None,
    timeout: float = 60,
    max_output: int = _DEFAULT_MAX_OUTPUT,
    env: str | None = None,
) -> Iterator[dict[str, Any]]:
    """``max_output`` caps one line here (longer ones are split); stderr is read and dropped."""
    ctx.check()
    child, limit, cap = _start("execve_lines", argv, cwd, env, timeout, max_output)
    proc = child.proc
    pending = bytearray()
    number = 0
    try:
        while child.open_streams or proc.poll() is None:
            ctx.check()
            if time.monotonic() - child.started > limit:
                ctx.warn(f"execve_lines(): killed pid {proc.pid} after its timeout of {limit:g} s")
                child.kill()
                limit = float("inf")
            child.reap_orphans()
            for stream, data in child.read(_POLL):
                if stream is not proc.stdout:
                    continue
                if not data:  # end of output: what is left is the last line
                    if pending:
                        number += 1
                        yield _line(number, pending, proc.pid)
                        pending.clear()
                    continue
                pending += data
                while True:
                    cut = pending.find(b"\n", 0, cap + 1)
                    if cut >= 0:
                        end = cut + 1
                    elif len(pending) >= cap:
                        end = cap  # a line too long: hand it out in pieces of max_output
                    else:
                        break
                    number += 1
                    yield _line(number, pending[:end], proc.pid)
                    del pending[:end]
    finally:
        child.close()


def _line(number: int, raw: bytes | bytearray, pid: int) -> dict[str, Any]:
    text = bytes(raw).removesuffix(b"\n").removesuffix(b"\r")
    return {"line_number": number, "line": text.decode("utf-8", "replace"), "pid": pid}


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [execve, execve_lines]
