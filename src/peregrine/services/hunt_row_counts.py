"""Where each flow's rows start in a hunt's combined result set, kept between pages.

A page of a hunt's results skips whole flows by their row counts. Reading each count (the
result set's ``.meta``) on every page made a page near the end of a 10,000-client hunt cost
10,000 file reads. A flow in a final state gets no more rows, so the counts of the hunt's first
flows, as far as all of them are final, are kept (``Spans``) and searched by bisection; only the
flows after them (still running, or scheduled later) are read again on each call.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from peregrine.datastore import FINAL_STATES, Datastore
from peregrine.filestore import Filestore

#: The hunt's clients read from the datastore at once.
CLIENT_PAGE = 1000
#: Result sets (hunt, artifact, source) whose counts are kept, the least recently used dropped.
KEPT_SETS = 64


@dataclass(frozen=True, slots=True)
class Span:
    """One flow's rows in the combined result set: rows ``start`` to ``start + rows - 1``."""

    client_id: str
    flow_id: str
    hostname: str | None
    start: int
    rows: int


@dataclass(slots=True)
class Spans:
    """The first flows of a hunt, in schedule order, all in a final state."""

    spans: list[Span] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ends[-1] if self.ends else 0


class HuntRowCounts:
    """The flows of a hunt's result set with where their rows start (thread-safe)."""

    def __init__(self, datastore: Datastore, filestore: Filestore) -> None:
        self.datastore = datastore
        self.filestore = filestore
        self._kept: OrderedDict[tuple[str, str, str], Spans] = OrderedDict()
        self._lock = threading.Lock()

    def spans(self, hunt_id: str, artifact: str, source: str, from_row: int = 0) -> Iterator[Span]:
        """The flows from the one holding row ``from_row`` on (flows without rows included
        after it), in schedule order."""
        key = (hunt_id, artifact, source)
        with self._lock:
            kept = self._kept.setdefault(key, Spans())
            self._kept.move_to_end(key)
            while len(self._kept) > KEPT_SETS:
                self._kept.popitem(last=False)
            known, ends, total = list(kept.spans), list(kept.ends), kept.total
        yield from known[bisect.bisect_right(ends, from_row) :]
        start, settled = total, True
        position = len(known)
        while True:
            page = self.datastore.hunts.clients(hunt_id, limit=CLIENT_PAGE, offset=position)
            for entry in page:
                rows = self.filestore.row_count(entry.client_id, entry.flow_id, artifact, source)
                span = Span(entry.client_id, entry.flow_id, entry.hostname, start, rows)
                settled = settled and entry.state in FINAL_STATES
                if settled:
                    self._keep(kept, position, span)
                position += 1
                start += rows
                yield span
            if len(page) < CLIENT_PAGE:
                return

    def count(self, hunt_id: str, artifact: str, source: str) -> int:
        """Rows of the combined result set."""
        end = None
        for span in self.spans(hunt_id, artifact, source, from_row=1 << 62):
            end = span.start + span.rows
        if end is not None:
            return end
        with self._lock:
            kept = self._kept.get((hunt_id, artifact, source))
            return kept.total if kept is not None else 0

    def _keep(self, kept: Spans, position: int, span: Span) -> None:
        with self._lock:
            if len(kept.spans) == position:  # another caller may have kept it already
                kept.spans.append(span)
                kept.ends.append(span.start + span.rows)
