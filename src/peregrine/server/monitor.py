"""The active check of in-flight collections, so none stays "In progress" forever.

Singleton work: it runs on the leader (in the embedded mode, the only process). Every few
seconds it looks at every flow that is not final and ends the ones past their time-out
(``timeout`` from creation, ``progress_timeout`` since the agent last sent anything), marks as
Unresponsive those whose agent has gone, and cancels timed-out work on the agent if it is here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from peregrine.protocol.messages import CancelCollection, encode

if TYPE_CHECKING:
    from peregrine.datastore import FlowRecord
    from peregrine.server.app import Server

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
#: Extra time past ``timeout`` before the server gives up (the agent stops itself at timeout).
GRACE_SECONDS = 30.0


class FlowMonitor:
    def __init__(self, server: Server, interval: float = INTERVAL_SECONDS) -> None:
        self.server = server
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                if self.server.leader.try_acquire():  # singleton work: the leader only
                    await self.check_once()
            except Exception:
                log.exception("flow monitor pass failed")
            await asyncio.sleep(self.interval)

    async def check_once(self, now: float | None = None) -> list[str]:
        """One pass; returns the flows it changed."""
        now = now or time.time()
        flows = await asyncio.to_thread(self.server.datastore.collections.in_flight)
        changed = []
        for flow in flows:
            if not self.server.leader.is_leader:
                break  # lost the lead mid-pass: the new leader takes it from here
            verdict = self.verdict(flow, now)
            if verdict is None:
                continue
            state, reason = verdict
            done = await asyncio.to_thread(
                self.server.datastore.collections.transition, flow.flow_id, state, now, reason
            )
            if not done:
                continue
            changed.append(flow.flow_id)
            log.info("flow %s of %s: %s (%s)", flow.flow_id, flow.client_id, state, reason)
            self.server.events.flow_changed(flow.flow_id)
            if state == "Error":
                await asyncio.to_thread(self.server.datastore.tasks.cancel, flow.flow_id)
                cancel = encode(CancelCollection(flow_id=flow.flow_id, reason=reason))
                await self.server.push(flow.client_id, cancel, False)
        return changed

    def verdict(self, flow: FlowRecord, now: float) -> tuple[str, str] | None:
        """What should happen to ``flow`` now, or None."""
        connected = self.server.is_online(flow.client_id)
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
