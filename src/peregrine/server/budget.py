"""Rates a frontend enforces: what one agent connection may send, how fast clients may enroll.

Both are token buckets. A connection's budget is charged after a message is stored and may go
into debt (a message is never cut); the session then stops reading from that agent until the
debt is paid, so websockets' receive queue fills, it stops reading the socket and TCP pushes
back on the agent, whose unacknowledged messages stay in its spool. Nothing is dropped.
"""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic() if now is None else now

    def _refill(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def charge(self, amount: float, now: float | None = None) -> float:
        """Take ``amount``, going into debt if need be; the seconds until the debt is paid."""
        self._refill(now)
        self.tokens -= amount
        return max(0.0, -self.tokens / self.rate)

    def try_take(self, amount: float = 1.0, now: float | None = None) -> float:
        """Take ``amount`` if there is that much and return 0.0; otherwise take nothing and
        return the seconds until there will be."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate


class ConnectionBudget:
    """Bytes and cells (values of rows and log entries) one connection may send a second,
    with two seconds' worth allowed in a burst."""

    __slots__ = ("bytes", "cells")

    def __init__(self, bytes_per_second: float, cells_per_second: float) -> None:
        self.bytes = TokenBucket(bytes_per_second, 2 * bytes_per_second)
        self.cells = TokenBucket(cells_per_second, 2 * cells_per_second)

    def charge(self, size: int, cells: int) -> float:
        """Charge what was just stored; the seconds to stop reading before the next message."""
        now = time.monotonic()
        return max(self.bytes.charge(size, now), self.cells.charge(cells, now))
