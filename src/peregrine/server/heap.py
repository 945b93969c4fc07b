"""Give the C heap's free pages back to the system after connections come and go in numbers.

A TLS handshake allocates far more than the idle connection keeps (OpenSSL's handshake
buffers, certificates, key shares), and glibc's malloc returns only the top of its heap by
itself: what a burst of handshakes freed in the middle stays resident. How much depends on the
churn: ≈ 1.9 KB an agent in the second round's 2,000-agent run, 0.1 KB in
``benchmarks/bench_connection_memory.py`` (one exchange each, little churn; docs/benchmarks.md).
``malloc_trim(0)`` gives those pages back; on a heap of gigabytes it takes about 10 ms, so it
runs at most every
``CHECK_EVERY`` seconds: after ``TRIM_AFTER`` connections opened or closed, or a tenth of that
once a burst has ended (nothing changed over the last check). Without glibc (musl, macOS) it
does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

from peregrine.libc import libc_function

log = logging.getLogger(__name__)

#: Connections opened or closed since the last trim that make the next one worth it.
TRIM_AFTER = 1000
CHECK_EVERY = 10.0


_TRIM: Callable[[int], int] | None = libc_function("malloc_trim", [ctypes.c_size_t])


class HeapTrimmer:
    """Counts connections opened and closed; trims the heap once enough have."""

    def __init__(self, after: int = TRIM_AFTER) -> None:
        self.after = after
        self.changes = 0
        self._at_last_check = 0
        #: Trims done (for tests and curiosity).
        self.trims = 0

    @property
    def available(self) -> bool:
        return _TRIM is not None

    def note(self) -> None:
        """A connection opened or closed."""
        self.changes += 1

    def trim_if_due(self) -> bool:
        """Trim if ``after`` connections changed since the last trim, or a tenth of that and
        none since the last check; whether it did."""
        quiet = self.changes == self._at_last_check
        self._at_last_check = self.changes
        due = self.changes >= self.after or (quiet and self.changes >= self.after // 10)
        if _TRIM is None or not due:
            return False
        self.changes = self._at_last_check = 0
        _TRIM(0)
        self.trims += 1
        return True

    async def run(self, every: float = CHECK_EVERY) -> None:
        while True:
            await asyncio.sleep(every)
            self.trim_if_due()
