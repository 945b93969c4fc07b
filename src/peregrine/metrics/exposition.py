"""Answer a scrape: this process's metrics, or every worker's under ``--workers N``, plus the
datastore's state.

Why prometheus-client's multiprocess mode and not a port per worker: the workers share the API
port (SO_REUSEPORT), so a scrape reaches whichever worker the kernel picks; with each worker's
values in files under ``PROMETHEUS_MULTIPROC_DIR`` that worker can answer for all of them, and
Prometheus and the balancer keep one target per host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from peregrine.metrics.state import FleetStateCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _ThisProcess(Collector):
    """The default registry (this process's metrics), seen through another registry."""

    def collect(self) -> Iterable[object]:  # type: ignore[override]
        return REGISTRY.collect()


class MetricsPage:
    """What ``/metrics`` answers; one per API app."""

    def __init__(self, state: FleetStateCollector | None = None) -> None:
        self.state = state
        self._registry = CollectorRegistry(auto_describe=False)
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            MultiProcessCollector(self._registry, directory)  # type: ignore[no-untyped-call]
        else:
            self._registry.register(_ThisProcess())
        if state is not None:
            self._registry.register(state)

    def render(self) -> bytes:
        """The text exposition format; blocking (the state's read), so call it in a thread."""
        return generate_latest(self._registry)


def prepare_multiprocess_dir(directory: Path) -> dict[str, str]:
    """An empty directory for the workers' files (a previous run's would be summed in), and
    the environment that tells the workers to use it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return {MULTIPROC_ENV: str(directory)}


def worker_gone(directory: Path, pid: int) -> None:
    """A worker died: its live gauges (connected agents, loop lag) stop counting."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
