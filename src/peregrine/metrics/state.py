"""The datastore's state as gauges: clients enrolled, collections and hunts by state.

Read at scrape time through ``read`` (one aggregate query each) and kept ``ttl`` seconds, so
several Prometheus servers or a short scrape interval cost one read per ``ttl``, not one each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DEFAULT_TTL = 5.0


class Counts(Protocol):
    @property
    def clients(self) -> int: ...
    @property
    def collections(self) -> Mapping[str, int]: ...
    @property
    def hunts(self) -> Mapping[str, int]: ...


class FleetStateCollector(Collector):
    def __init__(self, read: Callable[[], Counts], ttl: float = DEFAULT_TTL) -> None:
        self._read = read
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: Counts | None = None
        self._read_at = 0.0
        #: Datastore reads made (a test and the benchmark check the cache with it).
        self.reads = 0

    def counts(self) -> Counts:
        with self._lock:
            if self._cached is None or time.monotonic() - self._read_at >= self._ttl:
                self._cached = self._read()
                self._read_at = time.monotonic()
                self.reads += 1
            return self._cached

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts()
        yield GaugeMetricFamily(
            "peregrine_clients_enrolled", "Clients enrolled.", value=counts.clients
        )
        collections = GaugeMetricFamily(
            "peregrine_collections", "Collections (flows) by state.", labels=["state"]
        )
        for state, n in counts.collections.items():
            collections.add_metric([state], n)
        yield collections
        hunts = GaugeMetricFamily("peregrine_hunts", "Hunts by state.", labels=["state"])
        for state, n in counts.hunts.items():
            hunts.add_metric([state], n)
        yield hunts
