"""Rules over a real EventStream and a real datastore: each rule fires once per event (or
window), whatever the redeliveries and the number of frontends, and its alert reaches a real
webhook receiver and a real syslog socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from prometheus_client import REGISTRY

from peregrine.alerts.engine import AlertEngine
from peregrine.alerts.forward import Forwarding, Sink
from peregrine.alerts.rulebook import RuleBook
from peregrine.alerts.syslog import SyslogSink
from peregrine.alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSink, signature
from peregrine.datastore import open_datastore
from peregrine.events.stream import EventBatch, EventStream

from .conftest import Received

PROCESSES = "Linux.Events.ProcessExecution"
LOGINS = "Linux.Events.Logins"
COLUMNS = {
    PROCESSES: ("pid", "ppid", "exe", "cmdline", "username"),
    LOGINS: ("user", "success", "address", "service"),
}
FROM_TMP = {
    "rule_id": "Test.FromTmp",
    "artifacts": [PROCESSES],
    "condition": "exe LIKE '/tmp/%'",
    "severity": "high",
    "summary_columns": ["exe"],
}
SPRAY = {
    "rule_id": "Test.Spray",
    "artifacts": [LOGINS],
    "condition": "success = 0",
    "window": {"seconds": 60, "threshold": 50, "group_by": ["user"]},
}


COUNTED = [
    ("peregrine_alerts_raised_total", {"severity": "high"}),
    ("peregrine_alerts_forwarded_total", {"destination": "webhook", "outcome": "sent"}),
    ("peregrine_alerts_forwarded_total", {"destination": "syslog", "outcome": "sent"}),
]


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def columns(artifact: str) -> Sequence[str] | None:
    return COLUMNS.get(artifact)


def process_batch(client: str = "C.0000000000000001", seq: int = 0) -> EventBatch:
    rows = [
        {"pid": 10, "ppid": 1, "exe": "/usr/bin/ls", "cmdline": "ls", "username": "alice"},
        {"pid": 11, "ppid": 1, "exe": "/tmp/x", "cmdline": "/tmp/x -d", "username": "bob"},
        {"pid": 12, "ppid": 1, "exe": "/bin/sh", "cmdline": "sh", "username": "bob"},
    ]
    return EventBatch(client, PROCESSES, "", seq, rows, time.time(), hostname="web1")


def login_failure(client: str, received: float) -> EventBatch:
    row = {"user": "root", "success": 0, "address": "203.0.113.9", "service": "sshd"}
    return EventBatch(client, LOGINS, "", 0, [row], received, hostname=client)


@contextlib.asynccontextmanager
async def frontend(
    url: str, sinks: Sequence[Sink] = ()
) -> AsyncIterator[tuple[EventStream, AlertEngine]]:
    """One frontend's alerting: its own datastore connection, stream and engine."""
    datastore = open_datastore(url)
    stream = EventStream()
    engine = AlertEngine(datastore, stream, Forwarding(sinks), columns=columns)
    try:
        await engine.start()
        yield stream, engine
    finally:
        await engine.close()
        await stream.close()
        datastore.close()


def save_rules(url: str, *rules: dict[str, Any]) -> None:
    with open_datastore(url) as datastore:
        book = RuleBook(datastore, columns)
        for rule in rules:
            book.save(rule, "admin")


async def settled(*engines: AlertEngine, batches: int) -> None:
    """Wait until the engines have taken ``batches`` batches in all and stored their alerts."""
    deadline = time.monotonic() + 10
    while sum(engine.batches for engine in engines) < batches:
        assert time.monotonic() < deadline, "the engines did not take every batch"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    for engine in engines:
        await engine.forwarding.drain()


def test_a_rule_fires_once_and_reaches_the_webhook_and_syslog(
    datastore_url: str, webhook: tuple[str, Received], syslog_udp: tuple[int, socket.socket]
) -> None:
    hook_url, received = webhook
    port, udp = syslog_udp
    save_rules(datastore_url, FROM_TMP)
    before = [metric(name, labels) for name, labels in COUNTED]

    async def run() -> None:
        sinks = [
            WebhookSink(hook_url, secret="s3cret", backoff=0.01),
            SyslogSink("127.0.0.1", port, protocol="udp"),
        ]
        async with frontend(datastore_url, sinks) as (stream, engine):
            stream.publish(process_batch(seq=40))
            await settled(engine, batches=1)
            stream.publish(process_batch(seq=40))  # redelivered after a crash: nothing new
            await settled(engine, batches=2)

    asyncio.run(run())
    with open_datastore(datastore_url) as datastore:
        stored = datastore.alerts.query()
    assert len(stored) == 1
    alert = stored[0]
    assert (alert.rule_id, alert.client_id, alert.hostname) == (
        "Test.FromTmp",
        "C.0000000000000001",
        "web1",
    )
    assert alert.event_seq == 41 and alert.rows[0]["exe"] == "/tmp/x"
    assert alert.summary == "Test.FromTmp: exe=/tmp/x (on web1)"

    assert len(received.bodies) == 1
    assert received.bodies[0]["alert_id"] == alert.alert_id
    headers = {k.lower(): v for k, v in received.headers[0].items()}
    stamp = headers[TIMESTAMP_HEADER.lower()]
    assert headers[SIGNATURE_HEADER.lower()] == signature("s3cret", stamp, received.raw[0])

    message = udp.recv(65536).decode()
    assert message.startswith("<131>1 ")  # local0 (16) * 8 + error (3) for "high"
    assert 'rule_id="Test.FromTmp"' in message
    assert json.loads(message[message.index("] ") + 2 :])["alert_id"] == alert.alert_id
    udp.settimeout(0.3)
    try:
        extra = udp.recv(65536)
    except TimeoutError:
        extra = b""
    assert extra == b"", "the redelivered batch was forwarded again"
    # The metrics count the one alert, sent once to each destination.
    after = [metric(name, labels) for name, labels in COUNTED]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1.0, 1.0, 1.0]


def test_two_frontends_sharing_a_datastore_raise_one_alert(datastore_url: str) -> None:
    save_rules(datastore_url, FROM_TMP)

    async def run() -> None:
        async with (
            frontend(datastore_url) as (a, engine_a),
            frontend(datastore_url) as (b, engine_b),
        ):
            # The agent sent the batch to A, lost the acknowledgement, and sent it again to B.
            a.publish(process_batch(seq=7))
            b.publish(process_batch(seq=7))
            await settled(engine_a, engine_b, batches=2)
            assert engine_a.raised + engine_b.raised == 1

    asyncio.run(run())
    with open_datastore(datastore_url) as datastore:
        assert [a.event_seq for a in datastore.alerts.query()] == [8]


def test_a_windowed_rule_over_50_clients_on_two_frontends_fires_once(datastore_url: str) -> None:
    save_rules(datastore_url, SPRAY)
    start = (int(time.time()) // 60) * 60.0  # one window, whatever the clock reads

    async def run() -> None:
        async with (
            frontend(datastore_url) as (a, engine_a),
            frontend(datastore_url) as (b, engine_b),
        ):
            for n in range(49):
                (a if n % 2 else b).publish(login_failure(f"C.{n:016x}", start + n * 0.5))
            await settled(engine_a, engine_b, batches=49)
            assert engine_a.raised + engine_b.raised == 0  # 49 hosts: not yet
            for n in range(49, 60):
                (a if n % 2 else b).publish(login_failure(f"C.{n:016x}", start + n * 0.5))
            await settled(engine_a, engine_b, batches=60)

    asyncio.run(run())
    with open_datastore(datastore_url) as datastore:
        stored = datastore.alerts.query()
    assert len(stored) == 1
    assert stored[0].rule_id == "Test.Spray" and stored[0].client_id is None
    assert 'distinct client_id within 60 s for ["root"]' in stored[0].summary


def test_the_webhook_is_retried_with_backoff_until_it_answers(
    datastore_url: str, webhook: tuple[str, Received]
) -> None:
    hook_url, received = webhook
    received.fail_first.extend([503, 500])
    save_rules(datastore_url, FROM_TMP)

    async def run() -> WebhookSink:
        sink = WebhookSink(hook_url, backoff=0.01, retries=3)
        async with frontend(datastore_url, [sink]) as (stream, engine):
            stream.publish(process_batch())
            await settled(engine, batches=1)
        return sink

    sink = asyncio.run(run())
    assert len(received.bodies) == 1 and sink.delivered == 1 and sink.failed == 0


def test_a_disabled_rule_raises_nothing(datastore_url: str) -> None:
    save_rules(datastore_url, FROM_TMP)
    with open_datastore(datastore_url) as datastore:
        RuleBook(datastore, columns).set_enabled("Test.FromTmp", False, "admin")

    async def run() -> None:
        async with frontend(datastore_url) as (stream, engine):
            stream.publish(process_batch())
            await settled(engine, batches=1)
            assert engine.raised == 0

    asyncio.run(run())


def test_a_window_counts_per_group_and_per_window(datastore_url: str) -> None:
    """50 hosts failing as root fire; 49 failing as admin do not; nor do 30 + 30 hosts in two
    different windows."""
    save_rules(datastore_url, SPRAY)
    start = (int(time.time()) // 60) * 60.0 + 120  # two whole windows ahead (never pruned)

    def failure(client: str, user: str, received: float) -> EventBatch:
        row = {"user": user, "success": 0, "address": "203.0.113.9", "service": "sshd"}
        return EventBatch(client, LOGINS, "", 0, [row], received, hostname=client)

    async def run() -> None:
        async with frontend(datastore_url) as (stream, engine):
            for n in range(50):
                stream.publish(failure(f"C.{n:016x}", "root", start + 1))
            for n in range(49):
                stream.publish(failure(f"C.{n:016x}", "admin", start + 2))
            for n in range(60):  # 30 hosts at the end of one window, 30 early in the next
                stream.publish(failure(f"C.{n:016x}", "oracle", start + (59 if n < 30 else 61)))
            await settled(engine, batches=159)

    asyncio.run(run())
    with open_datastore(datastore_url) as datastore:
        stored = datastore.alerts.query()
    assert [a.summary.rsplit(" for ", 1)[1] for a in stored] == ['["root"]']


def test_closing_while_a_batch_is_being_matched_waits_for_it(datastore_url: str) -> None:
    """A frontend stopping mid-batch: the engine lets the match end before closing its
    matcher (closing it under the matching thread raised ThreadingViolationError)."""
    slow = {
        "rule_id": "Test.Slow",
        "artifacts": [PROCESSES],
        "condition": "(SELECT count(*) FROM events a, events b, events c, events d) > 0",
    }
    save_rules(datastore_url, slow)
    rows = [dict(process_batch().rows[0], pid=n) for n in range(300)]

    async def run() -> None:
        async with frontend(datastore_url) as (stream, engine):
            stream.publish(EventBatch("C.0000000000000001", PROCESSES, "", 0, rows, time.time()))
            while not engine.matching:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.02)  # in its thread now, for its 0.25 s limit

    asyncio.run(run())  # the frontend's close raised before the fix


def test_batches_queued_together_are_matched_together_and_each_alert_is_its_own(
    datastore_url: str,
) -> None:
    """200 one-client batches published at once: matched in a few groups (one table, one
    statement per rule each), and every alert names its own client and event."""
    save_rules(datastore_url, FROM_TMP)
    matched_before = metric("peregrine_alert_match_seconds_count", {})

    async def run() -> None:
        async with frontend(datastore_url) as (stream, engine):
            for n in range(200):
                stream.publish(process_batch(client=f"C.{n:016x}", seq=10 * n))
            await settled(engine, batches=200)

    asyncio.run(run())
    groups = metric("peregrine_alert_match_seconds_count", {}) - matched_before
    assert 1 <= groups < 50
    with open_datastore(datastore_url) as datastore:
        stored = datastore.alerts.query(limit=1000)
    assert sorted((a.client_id, a.event_seq) for a in stored) == [
        (f"C.{n:016x}", 10 * n + 1) for n in range(200)
    ]
    assert all(a.rows[0]["client_id"] == a.client_id for a in stored)
