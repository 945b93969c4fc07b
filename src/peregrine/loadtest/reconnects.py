"""How a simulated fleet lived through a change of frontends: every disconnection of every
client, how long each lasted, and how many reconnected in the same second.

Sampled (every ``interval`` seconds) rather than hooked into the simulator, so it watches any
fleet as it is; a gap shorter than the interval can be missed, which is said with the figures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from peregrine.loadtest.fleet import Fleet


@dataclass
class Gap:
    client: int
    lost: float
    back: float | None = None

    @property
    def seconds(self) -> float:
        return (self.back if self.back is not None else time.monotonic()) - self.lost


@dataclass
class ReconnectWatch:
    """Watches ``fleet`` while ``run()`` runs (cancel it to stop)."""

    fleet: Fleet
    interval: float = 0.05
    gaps: list[Gap] = field(default_factory=list)
    #: The most clients disconnected at one sample.
    most_disconnected: int = 0
    #: Gaps still open at the last sample.
    unfinished: list[Gap] = field(default_factory=list)

    async def run(self) -> None:
        open_gaps: dict[int, Gap] = {}
        while True:
            now = time.monotonic()
            for sim in self.fleet.sims:
                gap = open_gaps.get(sim.index)
                if not sim.connected and gap is None:
                    open_gaps[sim.index] = Gap(sim.index, now)
                elif sim.connected and gap is not None:
                    gap.back = now
                    self.gaps.append(open_gaps.pop(sim.index))
            self.most_disconnected = max(self.most_disconnected, len(open_gaps))
            self.unfinished = list(open_gaps.values())
            await asyncio.sleep(self.interval)

    def longest(self) -> float:
        """The longest any client stayed disconnected (still-open gaps count to now)."""
        return max((g.seconds for g in [*self.gaps, *self.unfinished]), default=0.0)

    def peak_per_second(self) -> int:
        """The most reconnections within any one second."""
        times = sorted(g.back for g in self.gaps if g.back is not None)
        peak = start = 0
        for end, at in enumerate(times):
            while at - times[start] > 1.0:
                start += 1
            peak = max(peak, end - start + 1)
        return peak
