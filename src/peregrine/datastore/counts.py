"""How many clients, collections by state and hunts by state: the fleet at a glance, for
the metrics a scrape reads (``metrics/state.py``). Each is one indexed aggregate query."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from .database import Database
from .records import FLOW_STATES, HUNT_STATES
from .schema import clients, flows, hunts


@dataclass
class FleetCounts:
    clients: int = 0
    #: Collections by state, every state (0 when none).
    collections: dict[str, int] = field(default_factory=dict)
    #: Hunts by state, every state (0 when none).
    hunts: dict[str, int] = field(default_factory=dict)


class CountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def fleet(self) -> FleetCounts:
        """The counts, read in one connection."""
        with self._db.read() as conn:
            enrolled = conn.execute(select(func.count()).select_from(clients)).scalar_one()
            by_flow_state = conn.execute(
                select(flows.c.state, func.count()).group_by(flows.c.state)
            )
            collections = dict.fromkeys(FLOW_STATES, 0)
            collections.update((str(state), int(n)) for state, n in by_flow_state)
            by_hunt_state = conn.execute(
                select(hunts.c.state, func.count()).group_by(hunts.c.state)
            )
            hunt_states = dict.fromkeys(HUNT_STATES, 0)
            hunt_states.update((str(state), int(n)) for state, n in by_hunt_state)
            return FleetCounts(int(enrolled), collections, hunt_states)
