"""A response body written by a thread: ``produced(write)`` runs ``write(sink)`` in a thread
and yields what it writes, through a queue of 16 chunks, so a slow reader holds the producer
back (flat memory) and a reader that goes away stops it (its next write raises). A producer's
failure is raised after the bytes it wrote, so the response breaks off instead of ending as a
whole-looking cut file."""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, Protocol

#: The media type of each export format (results, hunts, events).
MEDIA = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


class ReaderGone(Exception):
    """The client stopped reading: the producer stops writing."""


def produced(
    write: Callable[[IO[bytes]], object], stop: Callable[[], None] | None = None
) -> Iterator[bytes]:
    """Yield what ``write`` writes to the sink it is given; ``stop`` is called once the
    response ends, however it ends (to interrupt a query the producer is reading)."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
    gone = threading.Event()
    failed: list[BaseException] = []

    class Sink(io.RawIOBase):
        position = 0

        def writable(self) -> bool:
            return True

        def tell(self) -> int:
            return self.position

        def write(self, data: bytes) -> int:  # type: ignore[override]
            if gone.is_set():
                raise ReaderGone
            chunks.put(bytes(data))
            self.position += len(data)
            return len(data)

    def produce() -> None:
        try:
            write(Sink())  # type: ignore[arg-type]
        except BaseException as exc:
            if not gone.is_set():
                failed.append(exc)
        finally:
            chunks.put(None)  # never blocks for good: a reader that left emptied the queue

    threading.Thread(target=produce, daemon=True).start()
    try:
        while (chunk := chunks.get()) is not None:
            yield chunk
    finally:
        gone.set()
        if stop is not None:
            stop()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a producer waiting for room; its next write stops it
                chunks.get_nowait()
    if failed:
        raise failed[0]


class Exporter(Protocol):
    """A result set's exporter (a collection's ``FlowExport``, a hunt's ``HuntResults``)."""

    def export(self, key: str, artifact: str, source: str, fmt: str, out: IO[bytes], /) -> int: ...


def stream_export(
    exporter: Exporter, key: str, artifact: str, source: str, fmt: str
) -> Iterator[bytes]:
    """The export of ``key``'s result set, written in a thread as the client reads it: a
    reader that goes away stops the producer, and a failure breaks the response off."""
    return produced(lambda sink: exporter.export(key, artifact, source, fmt, sink))
