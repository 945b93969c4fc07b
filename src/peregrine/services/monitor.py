"""The active check of in-flight collections, so none stays "In progress" forever.

Singleton work: it runs on the leader (in the embedded mode, the only process). Every few
seconds it reads the flows not final that may be due (``maybe_due``: the times are compared
in the database, so a hunt's thousands of flows in flight are not read every pass) and ends
the ones past their time-out
(``timeout`` from creation, ``progress_timeout`` since the agent last sent anything), marks as
Unresponsive those whose agent has gone, and cancels timed-out work on the agent if it is here.
A collection that waited for its client past its ``expires`` without starting ends in Error
("expired before the client came online") and is no longer delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from peregrine.datastore import ERROR, SCHEDULED
from peregrine.logcontext import log_context
from peregrine.protocol.messages import CancelCollection, encode
from peregrine.services.outage import OutageLog

if TYPE_CHECKING:
    from peregrine.datastore import FlowRecord
    from peregrine.services.app import Services

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
#: Extra time past ``timeout`` before the server gives up (the agent stops itself at timeout).
GRACE_SECONDS = 30.0


class FlowMonitor:
    def __init__(self, services: Services, interval: float = INTERVAL_SECONDS) -> None:
        self.services = services
        self.interval = interval

    async def run(self) -> None:
        outage = OutageLog(log, "flow monitor")
        while True:
            try:
                if self.services.leader.try_acquire():  # singleton work: the leader only
                    await self.check_once()
                    outage.passed()
            except Exception as exc:
                outage.failed(exc)
            await asyncio.sleep(self.interval)

    async def check_once(self, now: float | None = None) -> list[str]:
        """One pass; returns the flows it changed."""
        now = now or time.time()
        flows = await asyncio.to_thread(
            self.services.datastore.collections.maybe_due,
            now,
            self.services.collections.default_expiry,
            GRACE_SECONDS,
        )
        changed = []
        store = self.services.datastore.collections
        for flow in flows:
            if not self.services.leader.is_leader:
                break  # lost the lead mid-pass: the new leader takes it from here
            expired = self.expired(flow, now)
            if expired is not None:
                # Only while still Scheduled, with its task, in one step: an agent that starts
                # it at this moment keeps it.
                state, reason = ERROR, expired
                done = await asyncio.to_thread(store.withdraw, flow.flow_id, now, reason)
            else:
                verdict = self.verdict(flow, now)
                if verdict is None:
                    continue
                state, reason = verdict
                done = await asyncio.to_thread(store.transition, flow.flow_id, state, now, reason)
            if not done:
                continue
            changed.append(flow.flow_id)
            with log_context(client_id=flow.client_id, flow_id=flow.flow_id, hunt_id=flow.hunt_id):
                log.info("flow %s of %s: %s (%s)", flow.flow_id, flow.client_id, state, reason)
            self.services.events.flow_changed(flow.flow_id)
            if state == "Error":
                await asyncio.to_thread(self.services.datastore.tasks.cancel, flow.flow_id)
                cancel = encode(CancelCollection(flow_id=flow.flow_id, reason=reason))
                await self.services.fleet.push(flow.client_id, cancel, False)
        return changed

    def expired(self, flow: FlowRecord, now: float) -> str | None:
        """Why a collection still waiting for its client has expired, or None.

        A flow stored before flows had an expiry gets the default, counted from creation."""
        if flow.state != SCHEDULED:
            return None
        expires = flow.expires
        if expires is None:
            expires = flow.created + self.services.collections.default_expiry
        if now < expires:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
        if self.services.fleet.is_online(flow.client_id):
            return f"expired before the agent started it (it expired at {when})"
        return f"expired before the client came online (it expired at {when})"

    def verdict(self, flow: FlowRecord, now: float) -> tuple[str, str] | None:
        """What should happen to ``flow`` now, or None."""
        connected = self.services.fleet.is_online(flow.client_id)
        if flow.timeout is not None:
            began = flow.started or flow.created
            # A flow still waiting for an offline client is not timing out yet: it is
            # delivered when the client connects. Its clock starts when it starts.
            waiting = flow.state == "Scheduled" and not connected
            if not waiting and now - began > flow.timeout + GRACE_SECONDS:
                return "Error", f"timed out: not finished within {flow.timeout:g} s"
        if flow.state in ("In progress", "Unresponsive") and flow.progress_timeout is not None:
            quiet = now - (flow.last_activity or flow.started or flow.created)
            if quiet > flow.progress_timeout:
                if connected:
                    return "Error", f"no progress for {flow.progress_timeout:g} s"
                if flow.state == "In progress":
                    return "Unresponsive", "the client went offline during the collection"
        return None
