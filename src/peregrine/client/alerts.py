"""``client.alerts`` and ``client.rules``: alerts raised by rules over incoming events, and the
rules themselves (``/alerts``, ``/rules``).

::

    for alert in p.alerts.list(state="open", severity=["high", "critical"]):
        print(alert["alert_id"], alert["summary"])
    p.alerts.acknowledge(alert["alert_id"], "our scanner")
    for alert in p.alerts.follow():                 # new alerts as they are raised
        ...
    p.rules.add({"rule_id": "Team.FromTmp", "artifacts": ["Linux.Events.ProcessExecutions"],
                 "condition": "exe LIKE '/tmp/%'", "severity": "high"})
    p.rules.test("Team.FromTmp", since=time.time() - 86400)   # over stored events

Answers are the API's JSON objects (dicts).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from peregrine.client._core import Call, segment

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine

Json = dict[str, Any]
#: Seconds between two reads of new alerts when following.
FOLLOW_POLL = 1.0


class AlertCalls:
    """Every alert and rule request, described once (sent by the sync and the async client)."""

    @staticmethod
    def list(
        state: str | None = None,
        severity: Iterable[str] | None = None,
        client_id: str | None = None,
        rule_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> Call[builtins.list[Json]]:
        params = {
            "state": state,
            "severity": list(severity) if severity is not None else None,
            "client_id": client_id,
            "rule_id": rule_id,
            "since": since,
            "until": until,
            "before": before,
            "after": after,
            "limit": limit,
        }
        clean = {k: v for k, v in params.items() if v is not None}
        return Call("GET", "/alerts", builtins.list[Json], clean)

    @staticmethod
    def get(alert_id: int) -> Call[Json]:
        return Call("GET", f"/alerts/{int(alert_id)}", Json)

    @staticmethod
    def acknowledge(alert_id: int, comment: str = "") -> Call[Json]:
        return Call("POST", f"/alerts/{int(alert_id)}/acknowledge", Json, {}, {"comment": comment})

    @staticmethod
    def rules() -> Call[builtins.list[Json]]:
        return Call("GET", "/rules", builtins.list[Json])

    @staticmethod
    def rule(rule_id: str) -> Call[Json]:
        return Call("GET", f"/rules/{segment(rule_id)}", Json)

    @staticmethod
    def save_rule(rule: Json) -> Call[Json]:
        return Call("POST", "/rules", Json, {}, rule)

    @staticmethod
    def switch_rule(rule_id: str, enabled: bool) -> Call[Json]:
        action = "enable" if enabled else "disable"
        return Call("POST", f"/rules/{segment(rule_id)}/{action}", Json)

    @staticmethod
    def test_rule(
        rule: str | Json,
        since: float,
        until: float | None = None,
        client_id: str | None = None,
        limit: int = 100,
    ) -> Call[Json]:
        body: Json = {"since": since, "limit": limit}
        body.update({"rule_id": rule} if isinstance(rule, str) else {"rule": rule})
        body.update({k: v for k, v in (("until", until), ("client_id", client_id)) if v})
        return Call("POST", "/rules/test", Json, {}, body)


class Alerts:
    """Alerts of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def list(self, **filters: Any) -> builtins.list[Json]:
        """Newest first; filters: state, severity (a list), client_id, rule_id, since, until,
        before (an alert id: older ones), after (newer ones, oldest first), limit."""
        return self._c._run(AlertCalls.list(**filters))

    def get(self, alert_id: int) -> Json:
        return self._c._run(AlertCalls.get(alert_id))

    def acknowledge(self, alert_id: int, comment: str = "") -> Json:
        return self._c._run(AlertCalls.acknowledge(alert_id, comment))

    def follow(
        self, after: int | None = None, timeout: float | None = None, **filters: Any
    ) -> Iterator[Json]:
        """New alerts as they are raised (from now, or after the id ``after``), oldest first;
        ends after ``timeout`` seconds, or never."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after if after is not None else _newest(self.list(limit=1, **filters))
        while deadline is None or time.monotonic() < deadline:
            page = self.list(after=last, limit=1000, **filters)
            yield from page
            if page:
                last = page[-1]["alert_id"]
            else:
                time.sleep(FOLLOW_POLL)


class Rules:
    """Alert rules of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def list(self) -> builtins.list[Json]:
        return self._c._run(AlertCalls.rules())

    def get(self, rule_id: str) -> Json:
        return self._c._run(AlertCalls.rule(rule_id))

    def add(self, rule: Json) -> Json:
        """Add a rule, or save a new version of it (checked by the server first)."""
        return self._c._run(AlertCalls.save_rule(rule))

    def enable(self, rule_id: str) -> Json:
        return self._c._run(AlertCalls.switch_rule(rule_id, True))

    def disable(self, rule_id: str) -> Json:
        return self._c._run(AlertCalls.switch_rule(rule_id, False))

    def test(
        self,
        rule: str | Json,
        since: float,
        until: float | None = None,
        client_id: str | None = None,
        limit: int = 100,
    ) -> Json:
        """A stored rule (by id) or a draft (a dict) over stored events of ``[since, until)``."""
        return self._c._run(AlertCalls.test_rule(rule, since, until, client_id, limit))


class AsyncAlerts:
    """Alerts of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def list(self, **filters: Any) -> builtins.list[Json]:
        return await self._c._run(AlertCalls.list(**filters))

    async def get(self, alert_id: int) -> Json:
        return await self._c._run(AlertCalls.get(alert_id))

    async def acknowledge(self, alert_id: int, comment: str = "") -> Json:
        return await self._c._run(AlertCalls.acknowledge(alert_id, comment))

    async def follow(
        self, after: int | None = None, timeout: float | None = None, **filters: Any
    ) -> AsyncIterator[Json]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = after if after is not None else _newest(await self.list(limit=1, **filters))
        while deadline is None or time.monotonic() < deadline:
            page = await self.list(after=last, limit=1000, **filters)
            for alert in page:
                yield alert
            if page:
                last = page[-1]["alert_id"]
            else:
                await asyncio.sleep(FOLLOW_POLL)


class AsyncRules:
    """Alert rules of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def list(self) -> builtins.list[Json]:
        return await self._c._run(AlertCalls.rules())

    async def get(self, rule_id: str) -> Json:
        return await self._c._run(AlertCalls.rule(rule_id))

    async def add(self, rule: Json) -> Json:
        return await self._c._run(AlertCalls.save_rule(rule))

    async def enable(self, rule_id: str) -> Json:
        return await self._c._run(AlertCalls.switch_rule(rule_id, True))

    async def disable(self, rule_id: str) -> Json:
        return await self._c._run(AlertCalls.switch_rule(rule_id, False))

    async def test(
        self,
        rule: str | Json,
        since: float,
        until: float | None = None,
        client_id: str | None = None,
        limit: int = 100,
    ) -> Json:
        return await self._c._run(AlertCalls.test_rule(rule, since, until, client_id, limit))


def _newest(page: builtins.list[Json]) -> int:
    return int(page[0]["alert_id"]) if page else 0
