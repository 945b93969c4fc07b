"""The alert engine: subscribed to a frontend's event stream, it matches each stored batch
against the enabled rules, stores what they raise (once per key) and forwards the new alerts.

Every frontend runs one. Rules are read from the datastore at start and again every
``refresh`` seconds (a rule changed through any frontend's API is in force everywhere within
that), and at once on this frontend when the API changes one here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from peregrine.datastore import Datastore, DatastoreUnavailable
from peregrine.datastore.alerts import AlertRecord
from peregrine.events.stream import EventBatch, EventStream
from peregrine.metrics.instruments import (
    ALERT_MATCH_SECONDS,
    ALERT_RULE_FAILURES,
    ALERTS_RAISED,
)

from .forward import Forwarding
from .matcher import Matcher
from .rules import Rule, RuleError, Window, rule_from_record

log = logging.getLogger(__name__)

#: The columns an event artifact's rows have, by artifact name (None: not an event artifact).
ColumnsOf = Callable[[str], Sequence[str] | None]
#: Matched rows kept in a windowed alert (the members beyond are counted, not kept).
WINDOW_ROWS_KEPT = 20
#: Seconds a batch waits for a datastore that does not answer before its alerts are given up.
OUTAGE_BOUND = 30.0
#: Seconds ``close`` waits for a batch being matched in its thread.
CLOSE_WAIT = 10.0
#: Batches matched together at most, and queued here at most (then the stream's queue holds
#: the rest, up to its backlog).
GROUP = 256
PENDING = 1024


def no_columns(_artifact: str) -> Sequence[str] | None:
    return ()


class AlertEngine:
    """Rules over one frontend's stream of stored event batches."""

    def __init__(
        self,
        datastore: Datastore,
        stream: EventStream,
        forwarding: Forwarding | None = None,
        *,
        columns: ColumnsOf = no_columns,
        refresh: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._datastore = datastore
        self._stream = stream
        self.forwarding = forwarding or Forwarding([])
        self._columns = columns
        self._refresh = refresh
        self._clock = clock
        self._matcher = Matcher()
        self._by_artifact: dict[str, list[Rule]] = {}
        self._loaded = 0.0
        self._failing: set[str] = set()
        self._windows_pruned = 0.0
        self._inflight: asyncio.Future[list[AlertRecord]] | None = None
        self._pending: deque[EventBatch] = deque()
        self._room = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.raised = 0

    async def start(self) -> None:
        await self.reload()
        self.forwarding.start()
        self._stream.subscribe("alerts", self.on_batch)

    async def close(self) -> None:
        self._stream.unsubscribe("alerts")
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._inflight is not None:  # a batch still matching in its thread: let it end
            await asyncio.wait([self._inflight], timeout=CLOSE_WAIT)
        await self.forwarding.close()
        self._matcher.close()

    async def reload(self) -> None:
        """Read the enabled rules from the datastore now."""
        records = await asyncio.to_thread(self._datastore.rules.all)
        by_artifact: dict[str, list[Rule]] = defaultdict(list)
        for record in records:
            if not record.enabled:
                continue
            try:
                rule = rule_from_record(record)
            except RuleError as exc:
                log.error("alert rule %s is not valid and is skipped: %s", record.rule_id, exc)
                continue
            for artifact in rule.artifacts:
                by_artifact[artifact].append(rule)
        self._by_artifact = dict(by_artifact)
        self._loaded = time.monotonic()

    @property
    def matching(self) -> bool:
        """Whether batches are being matched in a thread now."""
        return self._inflight is not None and not self._inflight.done()

    def rules_for(self, artifact: str) -> list[Rule]:
        return self._by_artifact.get(artifact, [])

    async def on_batch(self, batch: EventBatch) -> None:
        """Queue one stored batch for matching; waits only while ``PENDING`` are queued (the
        stream's own queue then holds the rest)."""
        while len(self._pending) >= PENDING:
            self._room.clear()
            await self._room.wait()
        self._pending.append(batch)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        """Match what is queued, many batches at a time: one table and one statement per rule
        for all the queued batches of an artifact, one thread hand-off, one transaction."""
        while self._pending:
            if time.monotonic() - self._loaded > self._refresh:
                try:
                    await self.reload()
                except DatastoreUnavailable:  # keep matching with the rules read last
                    self._loaded = time.monotonic()
                    log.warning("alert rules not re-read: the datastore does not answer")
            group = [self._pending.popleft() for _ in range(min(GROUP, len(self._pending)))]
            self._room.set()
            wanted = [b for b in group if b.rows and self.rules_for(b.artifact)]
            raised: list[AlertRecord] = []
            if wanted:
                started = time.monotonic()
                try:
                    raised = await self._evaluate_through_outages(wanted)
                except DatastoreUnavailable:
                    log.error("alerts of %d event batches given up: no datastore", len(wanted))
                ALERT_MATCH_SECONDS.observe(time.monotonic() - started)
            self.batches += len(group)
            self.raised += len(raised)
            for alert in raised:
                ALERTS_RAISED.labels(severity=alert.severity).inc()
                self.forwarding.submit(alert)

    async def _evaluate_through_outages(self, batches: list[EventBatch]) -> list[AlertRecord]:
        """``evaluate``, again after pauses while the datastore does not answer (0.1 s growing
        to 1 s, up to ``OUTAGE_BOUND``): every write is keyed, so a rerun stores nothing twice."""
        waited, pause = 0.0, 0.1
        while True:
            loop = asyncio.get_running_loop()
            self._inflight = loop.run_in_executor(None, self.evaluate, batches)
            try:
                return await asyncio.shield(self._inflight)  # close() waits for it
            except DatastoreUnavailable:
                if waited >= OUTAGE_BOUND:
                    raise
                await asyncio.sleep(pause)
                waited += pause
                pause = min(pause * 2, 1.0)

    def evaluate(self, batches: Sequence[EventBatch]) -> list[AlertRecord]:
        """Match, then store: the alerts this call raised (none when they exist already)."""
        by_artifact: dict[str, list[EventBatch]] = defaultdict(list)
        for batch in batches:
            by_artifact[batch.artifact].append(batch)
        now = self._clock()
        single: list[dict[str, Any]] = []
        raised: list[AlertRecord] = []
        for artifact, group in by_artifact.items():
            rules = self.rules_for(artifact)
            origin = [(batch, index) for batch in group for index in range(len(batch.rows))]
            metas = [_meta(batch, index) for batch, index in origin]
            rows = [batch.rows[index] for batch, index in origin]
            known = self._columns(artifact) or ()
            found, failed = self._matcher.match_rows(metas, rows, rules, known)
            ALERT_RULE_FAILURES.inc(len(failed))
            for rule_id, error in failed.items():
                if rule_id not in self._failing:  # once per rule, not once per batch
                    self._failing.add(rule_id)
                    log.warning("alert rule %s failed on %s: %s", rule_id, artifact, error)
            for rule in rules:
                hits: dict[int, list[dict[str, Any]]] = defaultdict(list)  # by batch
                for position in found.get(rule.rule_id, []):
                    batch, index = origin[position]
                    hits[id(batch)].append(_with_meta(batch, index))
                for batch in group:
                    matched = hits.get(id(batch))
                    if not matched:
                        continue
                    if rule.window is None:
                        single.extend(_event_alert(rule, batch, row, now) for row in matched)
                    else:
                        raised.extend(self._count(rule, rule.window, batch, matched, now))
        if single:
            raised[:0] = self._datastore.alerts.raise_many(single)
        self._prune_windows(now)
        return raised

    def _count(
        self, rule: Rule, window: Window, batch: EventBatch, rows: list[dict[str, Any]], now: float
    ) -> list[AlertRecord]:
        """Store this batch's members of each window/group, then raise for every group the
        fleet has now reached the threshold in (the unique key keeps that to one alert)."""
        start = window.start(batch.received)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[group_key(window, row)].append(row)
        new: list[dict[str, Any]] = []
        for group, members in groups.items():
            self._datastore.alerts.add_members(
                rule.rule_id, start, group, (str(row.get(window.distinct)) for row in members)
            )
            count = self._datastore.alerts.count_members(rule.rule_id, start, group)
            if count >= window.threshold:
                new.append(_window_alert(rule, window, start, group, count, members, now))
        return self._datastore.alerts.raise_many(new) if new else []

    def _prune_windows(self, now: float) -> None:
        if now - self._windows_pruned < 60:
            return
        self._windows_pruned = now
        longest = max(
            (r.window.seconds for rs in self._by_artifact.values() for r in rs if r.window),
            default=0.0,
        )
        self._datastore.alerts.forget_windows(now - 2 * max(longest, 60.0))


def _meta(batch: EventBatch, index: int) -> dict[str, Any]:
    """The meta columns of a batch's row ``index``."""
    return {
        "client_id": batch.client_id,
        "hostname": batch.hostname,
        "labels": ",".join(batch.labels),
        "artifact": batch.artifact,
        "source": batch.source,
        "event_seq": batch.first_seq + index,
        "received": batch.received,
    }


def _with_meta(batch: EventBatch, index: int) -> dict[str, Any]:
    row = dict(batch.rows[index])
    row.update(
        client_id=batch.client_id,
        hostname=batch.hostname,
        artifact=batch.artifact,
        source=batch.source,
        event_seq=batch.first_seq + index,
        received=batch.received,
    )
    return row


def _summary(rule: Rule, row: Mapping[str, Any]) -> str:
    text = rule.description or rule.rule_id
    details = ", ".join(f"{name}={row.get(name)}" for name in rule.summary_columns)
    return f"{text}: {details}" if details else text


def _event_alert(rule: Rule, batch: EventBatch, row: dict[str, Any], now: float) -> dict[str, Any]:
    seq = row["event_seq"]
    host = batch.hostname or batch.client_id
    return {
        "alert_key": f"{rule.rule_id}|{batch.client_id}|{batch.artifact}|{batch.source}|{seq}",
        "rule_id": rule.rule_id,
        "rule_version": rule.version,
        "severity": rule.severity,
        "time": now,
        "summary": f"{_summary(rule, row)} (on {host})",
        "client_id": batch.client_id,
        "hostname": batch.hostname,
        "artifact": batch.artifact,
        "source": batch.source,
        "event_seq": seq,
        "rows": [row],
    }


def group_key(window: Window, row: Mapping[str, Any]) -> str:
    if not window.group_by:
        return ""
    return json.dumps([row.get(name) for name in window.group_by], default=str)[:256]


def _window_alert(
    rule: Rule,
    window: Window,
    start: float,
    group: str,
    count: int,
    rows: Iterable[dict[str, Any]],
    now: float,
) -> dict[str, Any]:
    grouped = f" for {group}" if group else ""
    return {
        "alert_key": f"{rule.rule_id}|window|{start:.0f}|{group}",
        "rule_id": rule.rule_id,
        "rule_version": rule.version,
        "severity": rule.severity,
        "time": now,
        "summary": (
            f"{rule.description or rule.rule_id}: {count} distinct {window.distinct} "
            f"within {window.seconds:g} s{grouped}"
        ),
        "rows": list(rows)[:WINDOW_ROWS_KEPT],
    }
