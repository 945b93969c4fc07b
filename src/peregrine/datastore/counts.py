"""How many clients, collections by state and hunts by state: the fleet at a glance, for
the metrics a scrape reads (``metrics/state.py``). Each is one indexed aggregate query.

Counting every collection reads one index entry per collection ever made (0.5 s for a million
on SQLite), so a caller may count only the live states (Scheduled, In progress: the few under
way) often and the final ones rarely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from .database import Database
from .records import FLOW_STATES, HUNT_STATES, IN_PROGRESS, SCHEDULED
from .schema import clients, flows, hunts

#: The states a collection leaves: few collections are in them at any time.
LIVE_STATES = (SCHEDULED, IN_PROGRESS)


@dataclass
class FleetCounts:
    clients: int = 0
    #: Collections by state, every state counted (0 when none).
    collections: dict[str, int] = field(default_factory=dict)
    #: Hunts by state, every state (0 when none).
    hunts: dict[str, int] = field(default_factory=dict)


class CountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def fleet(self, live_only: bool = False) -> FleetCounts:
        """The counts, read in one connection; ``live_only``: collections only in the live
        states (the others are left out of ``collections``)."""
        states = LIVE_STATES if live_only else FLOW_STATES
        by_state = select(flows.c.state, func.count()).group_by(flows.c.state)
        if live_only:
            by_state = by_state.where(flows.c.state.in_(LIVE_STATES))
        with self._db.read() as conn:
            enrolled = conn.execute(select(func.count()).select_from(clients)).scalar_one()
            collections = dict.fromkeys(states, 0)
            collections.update((str(state), int(n)) for state, n in conn.execute(by_state))
            by_hunt_state = conn.execute(
                select(hunts.c.state, func.count()).group_by(hunts.c.state)
            )
            hunt_states = dict.fromkeys(HUNT_STATES, 0)
            hunt_states.update((str(state), int(n)) for state, n in by_hunt_state)
            return FleetCounts(int(enrolled), collections, hunt_states)
