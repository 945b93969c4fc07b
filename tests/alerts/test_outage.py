"""PostgreSQL going away while events arrive: the engine keeps the rules it read last, waits
for the datastore and then raises each alert once, instead of losing the batch's alerts. The
outage is real: the datastore reaches PostgreSQL through the relay of
``tests/datastore/test_outage.py``, which the test cuts."""

from __future__ import annotations

import asyncio
import time

from peregrine.alerts.engine import AlertEngine
from peregrine.alerts.rulebook import RuleBook
from peregrine.datastore import open_datastore
from peregrine.events.stream import EventStream
from tests.datastore.test_outage import Relay

from .test_engine import FROM_TMP, columns, process_batch


def test_alerts_wait_for_postgresql_and_are_raised_once(relayed: tuple[str, Relay]) -> None:
    url, relay = relayed
    datastore = open_datastore(url)
    RuleBook(datastore, columns).save(dict(FROM_TMP), "admin")

    async def run() -> None:
        stream = EventStream()
        engine = AlertEngine(datastore, stream, columns=columns, refresh=0.5)
        await engine.start()
        try:
            await asyncio.sleep(0.6)  # the rules are due to be read again: that fails too
            relay.cut()
            stream.publish(process_batch(seq=5))
            await asyncio.sleep(2.0)
            assert engine.raised == 0  # waiting for the datastore, not given up
            relay.open()
            deadline = time.monotonic() + 20
            while engine.raised == 0:
                assert time.monotonic() < deadline, "the alert was not raised after the outage"
                await asyncio.sleep(0.05)
            stream.publish(process_batch(seq=5))  # and the batch again: nothing new
            while engine.batches < 2:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
        finally:
            await engine.close()
            await stream.close()

    try:
        asyncio.run(run())
        assert [a.event_seq for a in datastore.alerts.query()] == [6]
    finally:
        datastore.close()
