"""What a simulated fleet saw: counters, connect latencies, and how to merge processes' views."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class FleetStats:
    clients: int = 0
    #: Simulated clients with a live, welcomed connection now.
    connected: int = 0
    #: Distinct clients welcomed at least once, and welcomes in all (reconnects included).
    ever_connected: int = 0
    sessions: int = 0
    #: When the fleet started (wall clock), and when a client was welcomed for the first time
    #: last: the span the whole fleet took to connect.
    started: float | None = None
    last_first_connect: float | None = None
    #: Welcomes that enrolled a new client, and the span from the first to the last of them.
    enrolled: int = 0
    first_enrolled: float | None = None
    last_enrolled: float | None = None
    #: Keys made this run (0: every identity came from the key cache) and seconds spent on keys.
    keys_generated: int = 0
    key_seconds: float = 0.0
    #: Failed connection attempts and protocol trouble, by kind.
    errors: Counter[str] = field(default_factory=Counter)
    #: Seconds from opening the TCP connection to the server's Welcome, per successful attempt.
    connect_latencies: list[float] = field(default_factory=list)
    flows_answered: int = 0
    flows_cancelled: int = 0
    rows_sent: int = 0
    #: Event rows sent for assigned CLIENT_EVENT artifacts (``events_per_second``).
    events_sent: int = 0
    #: Bytes of result frames (first sends; resends are counted in ``messages_resent``).
    bytes_sent: int = 0
    messages_resent: int = 0
    acks: int = 0
    elapsed: float = 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def enroll_rate(self) -> float | None:
        """New clients enrolled per second, over the span they were enrolled in."""
        if self.enrolled < 2 or self.first_enrolled is None or self.last_enrolled is None:
            return None
        span = self.last_enrolled - self.first_enrolled
        return self.enrolled / span if span > 0 else None

    @property
    def connect_seconds(self) -> float | None:
        """From the start to the last client's first welcome."""
        if self.started is None or self.last_first_connect is None:
            return None
        return self.last_first_connect - self.started

    @property
    def connect_rate(self) -> float | None:
        """Clients connected (for the first time) per second, over ``connect_seconds``."""
        span = self.connect_seconds
        return self.ever_connected / span if span else None

    def latency(self, fraction: float) -> float | None:
        return percentile(self.connect_latencies, fraction)

    def snapshot(self, with_latencies: bool = True) -> FleetStats:
        """A copy that can be sent to another process (latencies left out unless asked)."""
        copy = FleetStats(**{**asdict(self), "errors": Counter(self.errors)})
        if not with_latencies:
            copy.connect_latencies = []
        return copy

    @classmethod
    def merged(cls, parts: list[FleetStats]) -> FleetStats:
        """The fleet's view from the views of its processes."""
        out = cls()
        for p in parts:
            for name in (
                "clients", "connected", "ever_connected", "sessions", "enrolled",
                "keys_generated", "flows_answered", "flows_cancelled", "rows_sent",
                "events_sent", "bytes_sent", "messages_resent", "acks",
            ):  # fmt: skip
                setattr(out, name, getattr(out, name) + getattr(p, name))
            out.errors.update(p.errors)
            out.connect_latencies.extend(p.connect_latencies)
            out.key_seconds = max(out.key_seconds, p.key_seconds)
            out.elapsed = max(out.elapsed, p.elapsed)
            if p.started is not None:
                out.started = min(out.started or p.started, p.started)
            if p.last_first_connect is not None:
                out.last_first_connect = max(
                    out.last_first_connect or p.last_first_connect, p.last_first_connect
                )
            if p.first_enrolled is not None:
                out.first_enrolled = min(out.first_enrolled or p.first_enrolled, p.first_enrolled)
            if p.last_enrolled is not None:
                out.last_enrolled = max(out.last_enrolled or p.last_enrolled, p.last_enrolled)
        return out

    def summary(self) -> dict[str, Any]:
        """The figures a report shows (JSON-ready)."""

        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 2)

        rate = self.enroll_rate
        span, connect_rate = self.connect_seconds, self.connect_rate
        return {
            "clients": self.clients,
            "connected": self.connected,
            "ever_connected": self.ever_connected,
            "sessions": self.sessions,
            "errors": self.error_count,
            "errors_by_kind": dict(self.errors),
            "connect_seconds": None if span is None else round(span, 2),
            "connect_per_second": None if connect_rate is None else round(connect_rate, 1),
            "connect_ms_p50": ms(self.latency(0.50)),
            "connect_ms_p99": ms(self.latency(0.99)),
            "connect_ms_max": ms(max(self.connect_latencies, default=None)),
            "enrolled": self.enrolled,
            "enroll_per_second": None if rate is None else round(rate, 1),
            "keys_generated": self.keys_generated,
            "key_seconds": round(self.key_seconds, 3),
            "flows_answered": self.flows_answered,
            "flows_cancelled": self.flows_cancelled,
            "rows_sent": self.rows_sent,
            "events_sent": self.events_sent,
            "mb_sent": round(self.bytes_sent / 1e6, 3),
            "messages_resent": self.messages_resent,
            "elapsed_seconds": round(self.elapsed, 2),
        }
