"""The destinations' own behaviour, each against a real receiver: syslog over TCP (octet-counted
RFC 5424 frames, reconnecting when the receiver closed the connection), a JSON-lines file, a
bounded queue, and a webhook that never follows a redirect."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from peregrine.alerts.jsonl import JsonLinesSink
from peregrine.alerts.syslog import SyslogSink
from peregrine.alerts.webhook import WebhookSink

from .conftest import Received


def document(alert_id: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id, "rule_id": "T.Rule", "rule_version": 1, "severity": "critical",
        "time": 1767225600.25, "summary": 'a "quoted" ] summary', "client_id": "C.1",
        "hostname": "web1", "artifact": "A", "source": "", "event_seq": 3, "rows": [{"n": 1}],
        "state": "open", "acked_by": None, "acked_at": None, "ack_comment": None,
    }  # fmt: skip


async def _read_frame(reader: asyncio.StreamReader) -> str:
    length = int((await reader.readuntil(b" "))[:-1])
    return (await reader.readexactly(length)).decode()


def test_syslog_over_tcp_sends_octet_counted_frames_and_reconnects() -> None:
    async def run() -> list[str]:
        frames: list[str] = []
        connections = 0

        async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            frames.append(await _read_frame(reader))
            writer.close()  # one message per connection: the sink must open another

        server = await asyncio.start_server(receive, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = SyslogSink("127.0.0.1", port, protocol="tcp", app_name="prg-test")
        sink.start()
        sink.submit(document(1))
        await sink.drain()
        await asyncio.sleep(0.2)  # the receiver has closed its end by now
        sink.submit(document(2))
        await sink.drain()
        for _ in range(50):
            if len(frames) == 2:
                break
            await asyncio.sleep(0.05)
        await sink.close()
        server.close()
        assert connections == 2 and sink.failed == 0
        return frames

    first, second = asyncio.run(run())
    assert first.startswith("<130>1 2026-01-01T00:00:00.250000Z ")  # local0, critical
    assert ' prg-test - alert [peregrine@32473 alert_id="1" rule_id="T.Rule"' in first
    assert json.loads(first[first.index("] {") + 2 :])["summary"] == 'a "quoted" ] summary'
    assert 'alert_id="2"' in second


def test_alerts_are_appended_to_a_json_lines_file(tmp_path: Path) -> None:
    path = tmp_path / "siem" / "alerts.jsonl"

    async def run() -> None:
        sink = JsonLinesSink(path)
        sink.start()
        for n in (1, 2, 3):
            sink.submit(document(n))
        await sink.drain()
        await sink.close()

    asyncio.run(run())
    lines = path.read_text().splitlines()
    assert [json.loads(line)["alert_id"] for line in lines] == [1, 2, 3]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_destination_that_cannot_keep_up_drops_and_counts_instead_of_growing() -> None:
    async def run() -> JsonLinesSink:
        sink = JsonLinesSink(Path("/nonexistent/never-written.jsonl"), queue_size=2)
        for n in range(5):  # its task is not running: nothing leaves the queue
            sink.submit(document(n))
        return sink

    sink = asyncio.run(run())
    assert (sink.dropped, sink.delivered) == (3, 0)


def test_the_webhook_does_not_follow_redirects(webhook: tuple[str, Received]) -> None:
    """A redirect to an internal address is not followed: the alert is given up, not sent."""
    hook_url, received = webhook
    received.fail_first.append(302)

    async def run() -> WebhookSink:
        sink = WebhookSink(hook_url, retries=0)
        sink.start()
        sink.submit(document(1))
        await sink.drain()
        await sink.close()
        return sink

    sink = asyncio.run(run())
    assert (sink.failed, sink.delivered, received.bodies) == (1, 0, [])
