"""The datastore's state is read at most once per time-to-live, however often it is scraped;
collections in final states (an index entry per collection ever made) only every final_ttl."""

from __future__ import annotations

import time

from peregrine.datastore import Datastore, FlowRecord, open_datastore
from peregrine.metrics.exposition import MetricsPage
from peregrine.metrics.state import FleetStateCollector

CLIENT = "C.0000000000000001"


def add_flow(datastore: Datastore, flow_id: str, state: str) -> None:
    now = time.time()
    record = FlowRecord(flow_id, CLIENT, [], {}, "t", now)
    datastore.collections.create(record)
    if state != record.state:
        datastore.collections.transition(flow_id, state, now)


def test_the_state_is_read_once_per_ttl_and_final_states_less_often() -> None:
    with open_datastore("sqlite://") as datastore:
        datastore.clients.enroll(CLIENT, b"k" * 32, time.time())
        state = FleetStateCollector(datastore.counts.fleet, ttl=0.3, final_ttl=60)
        page = MetricsPage(state)
        for _ in range(5):
            text = page.render().decode()
        assert (state.reads, state.live_reads) == (1, 0)
        assert "peregrine_clients_enrolled 1.0" in text
        assert 'peregrine_collections{state="Unresponsive"} 0.0' in text
        assert 'peregrine_hunts{state="Paused"} 0.0' in text
        add_flow(datastore, "F.1", "Scheduled")
        add_flow(datastore, "F.2", "Finished")
        time.sleep(0.35)
        text = page.render().decode()
        assert (state.reads, state.live_reads) == (1, 1)
        assert 'peregrine_collections{state="Scheduled"} 1.0' in text  # live: counted now
        assert 'peregrine_collections{state="Finished"} 0.0' in text  # final: at final_ttl
        assert 'peregrine_collections{state="Error"} 0.0' in text  # still listed


def test_final_states_are_counted_again_after_their_ttl() -> None:
    with open_datastore("sqlite://") as datastore:
        datastore.clients.enroll(CLIENT, b"k" * 32, time.time())
        state = FleetStateCollector(datastore.counts.fleet, ttl=0.1, final_ttl=0.3)
        page = MetricsPage(state)
        page.render()
        add_flow(datastore, "F.2", "Finished")
        time.sleep(0.35)
        assert 'peregrine_collections{state="Finished"} 1.0' in page.render().decode()
        assert state.reads == 2
