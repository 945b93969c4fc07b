"""The datastore's state is read at most once per time-to-live, however often it is scraped."""

from __future__ import annotations

import time

from peregrine.datastore import open_datastore
from peregrine.metrics.exposition import MetricsPage
from peregrine.metrics.state import FleetStateCollector


def test_the_state_is_read_once_per_ttl_and_lists_every_state() -> None:
    with open_datastore("sqlite://") as datastore:
        datastore.clients.enroll("C.0000000000000001", b"k" * 32, time.time())
        state = FleetStateCollector(datastore.counts.fleet, ttl=0.3)
        page = MetricsPage(state)
        for _ in range(5):
            text = page.render().decode()
        assert state.reads == 1
        assert "peregrine_clients_enrolled 1.0" in text
        assert 'peregrine_collections{state="Unresponsive"} 0.0' in text
        assert 'peregrine_hunts{state="Paused"} 0.0' in text
        time.sleep(0.35)
        page.render()
        assert state.reads == 2
