"""A check-in reads the running hunts at most once a second for a burst of check-ins, yet a
hunt started or stopped (here, or on another frontend as the bus tells) applies to the very
next check-in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from peregrine.services.hunts import HuntSpec
from tests.services.test_without_frontend import CLIENTS, InMemoryFleet, services_alone

FIRST, SECOND, THIRD = CLIENTS


def test_a_hunt_started_or_stopped_applies_to_the_next_check_in(tmp_path: Path) -> None:
    fleet = InMemoryFleet(held=[])
    spec = HuntSpec(artifacts=[("Generic.Client.Info", {})])

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            hunts, datastore = services.hunts, services.datastore
            await hunts.client_checked_in(FIRST)  # no hunt running: that is read and kept
            hunt = await hunts.create(spec, "ana", start=True)
            fleet.held.add(SECOND)
            await hunts.client_checked_in(SECOND)
            assert datastore.hunts.scheduled_hunts(SECOND) == {hunt.hunt_id}
            await hunts.pause(hunt.hunt_id)
            fleet.held.add(THIRD)
            await hunts.client_checked_in(THIRD)
            assert datastore.hunts.scheduled_hunts(THIRD) == set()
            # Started on another frontend: its notice makes the next check-in read again
            # (FIRST is not held here, so only its check-in can schedule it).
            datastore.hunts.set_state(hunt.hunt_id, "Running", time.time())
            await hunts.started_elsewhere(hunt.hunt_id)
            await hunts.client_checked_in(FIRST)
            assert datastore.hunts.scheduled_hunts(FIRST) == {hunt.hunt_id}

    asyncio.run(scenario())
