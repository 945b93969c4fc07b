"""Run a query in a child process that a watchdog can kill.

SQLite and plugins run in the child; rows come back over a pipe as length-prefixed msgpack
frames, in batches flushed by count and by time, so rows appear as they are produced and a slow
reader slows the child down (the pipe applies back-pressure) instead of buffering. The parent's
watchdog kills the child on a hard time-out or when its memory passes the limit; a query that was
killed is recorded in the :class:`~peregrine.engine.denylist.Denylist`. A cancelled query's worker
is told to stop and killed if it has not within :data:`CANCEL_GRACE` seconds.

The child is an isolated interpreter (``python -I``) started in ``/``: the directory an agent or
``peregrine query`` was started from, ``PYTHONPATH`` and the user's site directory are never on its
``sys.path``, so a ``yara.py`` planted there cannot run inside it. It imports what the environment
has installed (site-packages, editable installs, plugin entry points) and peregrine itself.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec

from peregrine.engine.columns import Column
from peregrine.engine.context import ALL_PERMISSIONS, QueryLimits, UploadSink
from peregrine.engine.denylist import Denylist
from peregrine.engine.errors import QueryCancelled, QueryError, WorkerKilled, error_from_kind

if TYPE_CHECKING:
    import psutil

    from peregrine.engine.executor import Engine, Params
    from peregrine.engine.spare import WorkerSource

_FRAME = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
BATCH_ROWS = 512
BATCH_SECONDS = 0.1
WATCHDOG_INTERVAL = 0.05
#: The CPU limit holds over any window this long, not over the query's life: an event query
#: idle for an hour must not then spend its saved-up share at full speed for minutes.
CPU_WINDOW = 1.0
#: How long a cancelled worker may take to stop by itself (and kill a program it started)
#: before it is killed: a plugin stuck in C code (a regex, a blocking read) never looks.
CANCEL_GRACE = 0.5

#: Run by ``python -I -c``: -I leaves the working directory, PYTHONPATH and the user's site
#: directory off sys.path. The argument is the directory this process imported peregrine from,
#: appended in case it is not the environment's own (it holds the code running now).
_BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv.pop(1)); from peregrine.engine.worker import main; main()"
)


class Request(msgspec.Struct, tag="request"):
    sql: str
    params: list[Any] | dict[str, Any] | None = None
    timeout: float | None = None
    max_rows: int | None = None
    permissions: list[str] = []
    #: Artifact definitions the query uses as tables (see peregrine.artifacts.composition).
    artifacts: list[dict[str, Any]] = []
    upload_dir: str | None = None
    max_upload_bytes: int | None = None
    #: What the sink had used before this query: the budget is the collection's, not the worker's.
    upload_used: int = 0
    #: What relative paths in the query are relative to: the caller's working directory. The
    #: worker moves there after it started, so its imports never search it.
    cwd: str | None = None


class Cancel(msgspec.Struct, tag="cancel"):
    pass


class Header(msgspec.Struct, tag="header"):
    columns: list[tuple[str, str | None]]


class Rows(msgspec.Struct, tag="rows"):
    rows: list[tuple[Any, ...]]


class Done(msgspec.Struct, tag="done"):
    rows: int
    truncated: bool
    #: Ends with one that says how many were dropped, if ``warnings_dropped``.
    warnings: list[str]
    elapsed: float
    warnings_dropped: int = 0
    #: The upload sink's bytes used, this query's uploads included.
    upload_used: int = 0


class Failed(msgspec.Struct, tag="failed"):
    kind: str
    message: str
    warnings: list[str] = []
    warnings_dropped: int = 0
    upload_used: int = 0


ToWorker = Request | Cancel
FromWorker = Header | Rows | Done | Failed

_encoder = msgspec.msgpack.Encoder()
_to_worker = msgspec.msgpack.Decoder(ToWorker)
_from_worker = msgspec.msgpack.Decoder(FromWorker)


def write_frame(stream: IO[bytes], message: msgspec.Struct) -> None:
    payload = _encoder.encode(message)
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame's payload, or None at a clean end of stream."""
    head = stream.read(_FRAME.size)
    if not head:
        return None
    if len(head) < _FRAME.size:
        raise EOFError("the stream ended inside a frame header")
    (size,) = _FRAME.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the stream ended inside a frame")
    return payload


def worker_command() -> list[str]:
    """The command line of a query worker: an isolated interpreter that can import peregrine."""
    import peregrine

    home = str(Path(peregrine.__file__).resolve().parent.parent)
    return [sys.executable, "-I", "-c", _BOOTSTRAP, home]


def start_worker() -> subprocess.Popen[bytes]:
    """A new worker process: it warms up (engine, plugins), then waits for its request."""
    return subprocess.Popen(
        worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/"
    )


def _caller_directory() -> str | None:
    try:
        return str(Path.cwd())
    except OSError:  # deleted under us: relative paths mean nothing anyway
        return None


class IsolatedQuery:
    """A query running in a worker process. Read ``columns``, then iterate rows once.

    Creating one starts the worker (or takes a warm one from ``workers``: see
    :mod:`peregrine.engine.spare`) and returns at once; ``columns`` waits for the query's first
    row. ``cancel()`` may be called from any thread, at any time. After iteration,
    ``truncated``, ``warnings`` and ``rows_returned`` describe the run.
    """

    def __init__(
        self,
        sql: str,
        params: Params = None,
        *,
        limits: QueryLimits | None = None,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        denylist: Denylist | None = None,
        artifacts: Sequence[msgspec.Struct] = (),
        uploads: UploadSink | None = None,
        workers: WorkerSource | None = None,
    ) -> None:
        self.sql = sql
        self.limits = limits or QueryLimits()
        self.denylist = denylist
        if denylist is not None:
            denylist.check(sql)
        self.truncated = False
        self.warnings: list[str] = []
        #: Warnings past the worker's limit: counted, not kept (the last warning says so).
        self.warnings_dropped = 0
        self.rows_returned = 0
        self.elapsed = 0.0
        self.kill_reason: str | None = None
        self.cancelled = False
        self._columns: list[Column] | None = None
        self._uploads = uploads
        self._finished = threading.Event()
        #: (elapsed, CPU seconds used) samples over the last CPU_WINDOW, for the throttle.
        self._cpu_samples: deque[tuple[float, float]] = deque([(0.0, 0.0)])
        self._write_lock = threading.Lock()
        self._workers = workers
        self._proc = workers.take() if workers is not None else start_worker()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        self._started = time.monotonic()
        request = Request(
            sql=sql,
            params=list(params) if isinstance(params, (list, tuple)) else params,  # type: ignore[arg-type]
            timeout=self.limits.timeout,
            max_rows=self.limits.max_rows,
            permissions=sorted(permissions),
            artifacts=[msgspec.to_builtins(a) for a in artifacts],
            upload_dir=uploads.directory if uploads else None,
            max_upload_bytes=uploads.max_bytes if uploads else None,
            upload_used=uploads.used if uploads else 0,
            cwd=_caller_directory(),
        )
        self._send(request)
        self._watchdog = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._proc.pid

    @property
    def columns(self) -> list[Column]:
        """The result's columns; the first call waits for the worker to send them."""
        if self._columns is None:
            self._columns = self._read_header()
        return self._columns

    # -- the parent's side -------------------------------------------------------------------

    def _send(self, message: msgspec.Struct) -> None:
        # If the worker is gone (or finished), reading its output tells why.
        with self._write_lock, contextlib.suppress(ValueError, OSError):
            write_frame(self._stdin, message)

    def _watch(self) -> None:
        hard = self.limits.effective_hard_timeout()
        limit_bytes = (self.limits.max_memory_mb or 0) * 1024 * 1024
        child = None
        if self.limits.cpu_limit or limit_bytes:
            # psutil only for these limits: an agent whose collections set neither (the usual
            # case) never loads it.
            import psutil

            try:
                child = psutil.Process(self._proc.pid)
                # A spare's warm-up was not this query's: its share counts from here.
                times = child.cpu_times()
            except psutil.NoSuchProcess:
                return
            self._cpu_samples = deque(
                [(time.monotonic() - self._started, times.user + times.system)]
            )
        while not self._finished.wait(WATCHDOG_INTERVAL):
            if self._proc.poll() is not None:
                return
            elapsed = time.monotonic() - self._started
            if hard is not None and elapsed > hard:
                self._kill(f"it ran past the hard time-out of {hard:g} s")
                return
            if child is not None and not self._check_usage(child, elapsed, limit_bytes):
                return

    def _check_usage(self, child: psutil.Process, elapsed: float, limit_bytes: int) -> bool:
        """Hold the worker to its CPU share and kill it past its memory limit. False when there
        is nothing left to watch (it was killed, or it is gone)."""
        import psutil

        try:
            if self.limits.cpu_limit:
                self._throttle(child, elapsed, self.limits.cpu_limit / 100)
            if limit_bytes:
                rss = child.memory_info().rss
                if rss > limit_bytes:
                    self._kill(
                        f"it used {rss / 2**20:.0f} MB, over the memory limit of "
                        f"{self.limits.max_memory_mb} MB"
                    )
                    return False
        except psutil.NoSuchProcess:
            return False
        return True

    def _throttle(self, child: psutil.Process, elapsed: float, share: float) -> None:
        """Pause the worker long enough to bring its CPU use over the last :data:`CPU_WINDOW`
        down to ``share``."""
        times = child.cpu_times()
        used = times.user + times.system
        samples = self._cpu_samples
        samples.append((elapsed, used))
        while len(samples) > 2 and elapsed - samples[1][0] >= CPU_WINDOW:
            samples.popleft()
        since, used_before = samples[0]
        pause = (used - used_before) / share - (elapsed - since)
        if pause <= 0:
            return
        child.suspend()
        try:
            self._finished.wait(min(pause, 1.0))
        finally:
            child.resume()

    def _kill(self, reason: str) -> None:
        self.kill_reason = reason
        self._proc.kill()

    def _next_message(self) -> Header | Rows | Done | Failed:
        try:
            payload = read_frame(self._stdout)
        except (EOFError, ValueError):
            payload = None
        if payload is None:
            raise self._died()
        message: FromWorker = _from_worker.decode(payload)
        return message

    def _died(self) -> QueryError:
        code = self._proc.wait()
        self._finish()
        if self.kill_reason is None and self.cancelled:
            return QueryCancelled("the query was cancelled")
        if self.kill_reason is None:
            signal = f"signal {-code}" if code < 0 else f"exit code {code}"
            self.kill_reason = f"the query worker died ({signal})"
            message = f"{self.kill_reason}; the query crashed it"
        else:
            message = f"the watchdog killed the query worker: {self.kill_reason}"
        if self.denylist is not None:
            self.denylist.add(self.sql, self.kill_reason)
        return WorkerKilled(message)

    def _read_header(self) -> list[Column]:
        message = self._next_message()
        if isinstance(message, Failed):
            self._finish()
            self.warnings = message.warnings
            self.warnings_dropped = message.warnings_dropped
            self._count_uploads(message.upload_used)
            raise error_from_kind(message.kind, message.message)
        if not isinstance(message, Header):
            self._finish()
            raise QueryError(f"the query worker sent {type(message).__name__} before a header")
        return [Column(name, decl) for name, decl in message.columns]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        try:
            self.columns  # noqa: B018 (the header comes first)
            while True:
                message = self._next_message()
                if isinstance(message, Rows):
                    for row in message.rows:
                        self.rows_returned += 1
                        yield row
                elif isinstance(message, Done):
                    self.truncated = message.truncated
                    self.warnings = message.warnings
                    self.warnings_dropped = message.warnings_dropped
                    self._count_uploads(message.upload_used)
                    self.elapsed = message.elapsed
                    return
                elif isinstance(message, Failed):
                    self.warnings = message.warnings
                    self.warnings_dropped = message.warnings_dropped
                    self._count_uploads(message.upload_used)
                    raise error_from_kind(message.kind, message.message)
                else:
                    raise QueryError("the query worker sent a second header")
        finally:
            self._finish()

    def _count_uploads(self, used: int) -> None:
        if self._uploads is not None:
            self._uploads.used = max(self._uploads.used, used)

    def cancel(self) -> None:
        """Stop the query whatever it is doing, before its first row too: the worker is told to
        stop (so it can kill a program it started) and killed if it has not ended
        :data:`CANCEL_GRACE` seconds later. Iterating then raises :class:`QueryCancelled`."""
        self.cancelled = True
        self._send(Cancel())

        def kill_later() -> None:
            if not self._finished.wait(CANCEL_GRACE) and self._proc.poll() is None:
                self._proc.kill()

        threading.Thread(target=kill_later, name="query-cancel", daemon=True).start()

    def stop(self) -> None:
        """Cancel, and return only once the worker is gone: for a caller about to exit, whose
        daemon threads (``cancel``'s delayed kill among them) die with it."""
        self.cancel()
        try:
            self._proc.wait(timeout=CANCEL_GRACE)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._finish()

    def _finish(self) -> None:
        if not self._finished.is_set() and self._workers is not None:
            self._workers.done()
        self._finished.set()
        self.elapsed = self.elapsed or time.monotonic() - self._started
        with self._write_lock, contextlib.suppress(OSError):  # it may have died with unread input
            self._stdin.close()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()


# -- the worker's side -----------------------------------------------------------------------


class _BatchWriter:
    """Collects rows and flushes them by count, and by time from a background thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.rows: list[tuple[Any, ...]] = []
        self.last_flush = time.monotonic()
        self.closed = threading.Event()
        threading.Thread(target=self._tick, name="batch-flusher", daemon=True).start()

    def add(self, row: tuple[Any, ...]) -> None:
        with self.lock:
            self.rows.append(row)
            if len(self.rows) >= BATCH_ROWS:
                self._flush()

    def _tick(self) -> None:
        while not self.closed.wait(BATCH_SECONDS):
            with self.lock:
                if self.rows and time.monotonic() - self.last_flush >= BATCH_SECONDS:
                    self._flush()

    def _flush(self) -> None:
        rows, self.rows = self.rows, []
        self.last_flush = time.monotonic()
        write_frame(self.stream, Rows(rows=rows))

    def send(self, message: msgspec.Struct) -> None:
        """Flush pending rows, then send ``message`` (header, done or failure)."""
        with self.lock:
            if self.rows:
                self._flush()
            write_frame(self.stream, message)

    def close(self) -> None:
        self.closed.set()


def _warm() -> Engine:
    """What every query needs, done before its request is known (a spare waits warm): SQLite
    and the engine imported, every plugin loaded and registered."""
    from peregrine.engine.executor import Engine

    return Engine()


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Warm up, then run one request from ``stdin``, answering on ``stdout``."""
    from peregrine.engine.context import QueryContext
    from peregrine.engine.executor import Engine, QueryResult

    try:
        engine, unwell = _warm(), None
    except Exception as exc:  # a plugin that fails to load: said in answer to the request
        engine, unwell = None, exc
    payload = read_frame(stdin)
    if payload is None:
        return
    request = _to_worker.decode(payload)
    if not isinstance(request, Request):
        return
    if request.cwd:
        with contextlib.suppress(OSError):  # gone: relative paths then find nothing
            os.chdir(request.cwd)
    ctx = QueryContext(
        limits=QueryLimits(timeout=request.timeout, max_rows=request.max_rows),
        permissions=frozenset(request.permissions),
        uploads=UploadSink(request.upload_dir, request.max_upload_bytes, request.upload_used)
        if request.upload_dir
        else None,
        scanner_pids=frozenset({os.getpid(), os.getppid()}),
    )
    out = _BatchWriter(stdout)
    started = time.monotonic()
    result: QueryResult | None = None

    def listen_for_cancel() -> None:
        while (frame := read_frame(stdin)) is not None:
            if isinstance(_to_worker.decode(frame), Cancel):
                if result is not None:
                    result.cancel()
                else:
                    ctx.cancel()

    threading.Thread(target=listen_for_cancel, name="cancel-listener", daemon=True).start()
    try:
        if engine is None:
            raise unwell or QueryError("the query worker did not start")
        if request.artifacts:
            # Lazy import: plain queries never load the artifact layer.
            from peregrine.artifacts.composition import registry_for_artifacts
            from peregrine.artifacts.model import Artifact

            artifacts = [msgspec.convert(a, Artifact) for a in request.artifacts]
            engine = Engine(registry_for_artifacts({a.name: a for a in artifacts}, request.sql))
        # The header goes out once the statement is prepared, before the first row: an event
        # query's first row may be a long time coming.
        result = engine.execute(
            request.sql,
            request.params,
            ctx=ctx,
            on_columns=lambda columns: out.send(Header([(c.name, c.type) for c in columns])),
        )
        for row in result:
            out.add(row)
        out.send(
            Done(
                rows=result.rows_returned,
                truncated=result.truncated,
                warnings=ctx.warnings.report(),
                elapsed=time.monotonic() - started,
                warnings_dropped=ctx.warnings.dropped,
                upload_used=ctx.uploads.used if ctx.uploads else 0,
            )
        )
    except QueryError as exc:
        out.send(
            Failed(
                kind=exc.kind,
                message=str(exc),
                warnings=ctx.warnings.report(),
                warnings_dropped=ctx.warnings.dropped,
                upload_used=ctx.uploads.used if ctx.uploads else 0,
            )
        )
    except Exception as exc:
        out.send(Failed(kind="error", message=f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


def main() -> None:
    # Keep the protocol stream to ourselves: anything a library prints goes to stderr.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        serve(sys.stdin.buffer, protocol_out)
        protocol_out.flush()
    finally:
        # The cancel listener may be blocked reading stdin; do not wait for it at shutdown.
        os._exit(0)


if __name__ == "__main__":
    main()
