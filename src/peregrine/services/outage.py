"""One warning when a loop's datastore goes away and one when it is back, not a traceback a pass.

The flow monitor and the hunt manager run a pass every few seconds. While PostgreSQL restarts
every pass fails the same way, and a traceback each time would bury the log (and the one
line that matters: it is gone, then it is back). Any other error keeps its traceback: that is
a bug to read.
"""

from __future__ import annotations

import logging

from peregrine.datastore.errors import DatastoreUnavailable


class OutageLog:
    """What one loop says about its datastore's outages."""

    def __init__(self, logger: logging.Logger, loop: str) -> None:
        self.log = logger
        self.loop = loop
        self.down = False

    def failed(self, exc: Exception) -> None:
        """A pass failed: one warning for an outage's first, a traceback for anything else."""
        if not isinstance(exc, DatastoreUnavailable):
            self.log.error("%s pass failed", self.loop, exc_info=exc)
        elif not self.down:
            self.down = True
            self.log.warning("%s: %s; its passes wait until it answers again", self.loop, exc)

    def passed(self) -> None:
        """A pass read the datastore: say once that an outage is over."""
        if self.down:
            self.down = False
            self.log.warning("%s: the datastore answers again; passes resume", self.loop)
