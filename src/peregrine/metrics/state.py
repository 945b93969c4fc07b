"""The datastore's state as gauges: clients enrolled, collections and hunts by state.

Read at scrape time through ``read`` (one aggregate query each) and kept ``ttl`` seconds, so
several Prometheus servers or a short scrape interval cost one read per ``ttl``, not one each.
Collections in final states (Finished, Error...) are counted only every ``final_ttl``
seconds: their count reads an index entry per collection ever made (0.5 s for a million on
SQLite), while the live states (Scheduled, In progress) are few and counted every ``ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DEFAULT_TTL = 5.0
FINAL_TTL = 300.0


class Counts(Protocol):
    @property
    def clients(self) -> int: ...
    @property
    def collections(self) -> Mapping[str, int]: ...
    @property
    def hunts(self) -> Mapping[str, int]: ...


class FleetStateCollector(Collector):
    def __init__(
        self,
        read: Callable[[bool], Counts],
        ttl: float = DEFAULT_TTL,
        final_ttl: float = FINAL_TTL,
    ) -> None:
        #: ``read(live_only)``: every count, or the collections in live states only.
        self._read = read
        self._ttl = ttl
        self._final_ttl = final_ttl
        self._lock = threading.Lock()
        self._latest: Counts | None = None
        self._collections: dict[str, int] = {}
        self._read_at = self._all_read_at = 0.0
        #: Datastore reads made, all counts and live only (tests check the caching with them).
        self.reads = self.live_reads = 0

    def counts(self) -> tuple[Counts, dict[str, int]]:
        """The latest counts, and collections by state (final ones as of the last full read)."""
        with self._lock:
            now = time.monotonic()
            if self._latest is None or now - self._all_read_at >= self._final_ttl:
                self._latest = self._read(False)
                self._all_read_at = self._read_at = time.monotonic()
                self._collections = dict(self._latest.collections)
                self.reads += 1
            elif now - self._read_at >= self._ttl:
                self._latest = self._read(True)
                self._read_at = time.monotonic()
                self._collections.update(self._latest.collections)
                self.live_reads += 1
            return self._latest, dict(self._collections)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts, by_state = self.counts()
        yield GaugeMetricFamily(
            "peregrine_clients_enrolled", "Clients enrolled.", value=counts.clients
        )
        collections = GaugeMetricFamily(
            "peregrine_collections",
            "Collections (flows) by state; final states as of up to 5 minutes ago.",
            labels=["state"],
        )
        for state, n in by_state.items():
            collections.add_metric([state], n)
        yield collections
        hunts = GaugeMetricFamily("peregrine_hunts", "Hunts by state.", labels=["state"])
        for state, n in counts.hunts.items():
            hunts.add_metric([state], n)
        yield hunts
