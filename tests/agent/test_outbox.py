"""The agent's outbox: a small collection goes out as one FlowBatch frame; a lone start waits
for the rest only so long; a server of the previous version gets a frame per message."""

from __future__ import annotations

from dataclasses import dataclass

from peregrine.agent.outbox import Outbox
from peregrine.protocol.messages import (
    EventRows,
    FlowBatch,
    FlowFinished,
    FlowMessage,
    FlowStarted,
    ResultBatch,
    decode_from_agent,
    encode,
)


@dataclass(frozen=True)
class Item:
    flow_id: str
    seq: int
    payload: bytes


def spooled(*messages: FlowMessage) -> list[Item]:
    return [Item(m.flow_id, m.seq, encode(m)) for m in messages]


START = FlowStarted(flow_id="F.1", seq=1, started=1.0)
ROWS = ResultBatch(flow_id="F.1", seq=2, artifact="A", source="", columns=["n"], rows=[[1]])
END = FlowFinished(flow_id="F.1", seq=3, status="finished")


def test_a_lone_start_waits_then_goes_with_the_rest_in_one_frame() -> None:
    outbox = Outbox(batches=True, hold=1.0)
    frames, count, due = outbox.take(spooled(START), now=100.0)
    assert (frames, count, due) == ([], 0, 1.0)
    frames, count, due = outbox.take(spooled(START, ROWS, END), now=100.4)
    assert count == 3 and due is None
    (frame,) = frames
    batch = decode_from_agent(frame)
    assert isinstance(batch, FlowBatch)
    assert [m.seq for m in batch.messages] == [1, 2, 3]
    assert outbox.take(spooled(START, ROWS, END), now=101.0) == ([], 0, None)  # sent once


def test_a_start_held_long_enough_goes_alone() -> None:
    outbox = Outbox(batches=True, hold=1.0)
    assert outbox.take(spooled(START), now=100.0)[0] == []
    frames, count, due = outbox.take(spooled(START), now=100.5)
    assert (frames, count) == ([], 0) and due is not None and abs(due - 0.5) < 1e-9
    frames, count, due = outbox.take(spooled(START), now=101.0)
    assert frames == [encode(START)] and count == 1 and due is None


def test_an_old_server_gets_a_frame_per_message_and_resends_go_again() -> None:
    outbox = Outbox(batches=False)
    frames, count, due = outbox.take(spooled(START, ROWS), now=0.0)
    assert frames == [encode(START), encode(ROWS)] and count == 2 and due is None
    outbox.resend_all()
    assert outbox.take(spooled(START, ROWS), now=0.0)[0] == [encode(START), encode(ROWS)]


def test_event_rows_go_alone_in_their_place_and_are_never_held() -> None:
    events = EventRows(
        stream="events:Linux.Events.X", seq=1, artifact="Linux.Events.X", source="", time=1.0,
        columns=["n"], rows=[[1]],
    )  # fmt: skip
    outbox = Outbox(batches=True, hold=1.0)
    items = [Item(events.stream, events.seq, encode(events)), *spooled(START, ROWS, END)]
    frames, count, due = outbox.take(items, now=0.0)
    assert count == 4 and due is None
    assert frames[0] == encode(events)
    batch = decode_from_agent(frames[1])
    assert isinstance(batch, FlowBatch) and [m.seq for m in batch.messages] == [1, 2, 3]
