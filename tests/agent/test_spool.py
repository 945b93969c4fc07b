"""The agent's spool: durable, ordered, sequence numbers that survive restarts, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from peregrine.agent.spool import Spool, SpoolFull


def payload(text: str):  # type: ignore[no-untyped-def]
    return lambda seq: f"{text}#{seq}".encode()


def test_sequence_numbers_continue_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    assert spool.start_flow("F.1", b"request")
    assert not spool.start_flow("F.1", b"request")  # delivered twice: known already
    assert [spool.append("F.1", payload("a")) for _ in range(3)] == [1, 2, 3]
    spool.close()
    again = Spool(tmp_path / "spool.db")
    assert again.append("F.1", payload("b")) == 4
    assert [(m.seq, m.payload) for m in again.pending()] == [
        (1, b"a#1"), (2, b"a#2"), (3, b"a#3"), (4, b"b#4"),
    ]  # fmt: skip
    assert again.interrupted_flows() == ["F.1"]


def test_ack_frees_everything_up_to_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    for _ in range(4):
        spool.append("F.1", payload("x"))
    size = spool.size
    assert spool.ack("F.1", 2) == 2
    assert [m.seq for m in spool.pending()] == [3, 4]
    assert spool.size < size
    assert spool.ack("F.1", 2) == 0  # an ack repeated after a reconnect


def test_a_full_spool_refuses_more(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=10)
    spool.append("F.1", lambda seq: b"x" * 20)
    with pytest.raises(SpoolFull):
        spool.append("F.1", payload("more"))
    spool.ack("F.1", 1)
    assert spool.append("F.1", payload("fits again")) == 2


def test_forget_done_flows_keeps_what_is_not_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    for flow in ("F.done", "F.waiting"):
        spool.start_flow(flow, b"r")
        spool.append(flow, payload(flow))
        spool.finish_flow(flow)
    spool.ack("F.done", 1)
    spool.forget_done_flows()
    # The waiting flow keeps its numbering; the forgotten one would start afresh.
    assert spool.append("F.waiting", payload("late")) == 2
    assert spool.start_flow("F.done", b"r") is True
    assert not spool.start_flow("F.waiting", b"r")


def test_a_flow_starts_with_its_first_message_stored_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    assert spool.start_flow("F.1", b"request", payload("start"))
    assert not spool.start_flow("F.1", b"request", payload("again"))  # delivered twice
    assert spool.append("F.1", payload("rows")) == 2
    assert [(m.seq, m.payload) for m in spool.pending()] == [(1, b"start#1"), (2, b"rows#2")]


def test_messages_appended_together_are_numbered_in_order_and_can_end_the_flow(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.db")
    spool.start_flow("F.1", b"request", payload("start"))
    assert spool.append_all("F.1", [payload("rows"), payload("status")]) == [2, 3]
    assert spool.interrupted_flows() == ["F.1"]
    assert spool.append_all("F.1", [payload("end")], finish=True) == [4]
    assert spool.interrupted_flows() == []  # ended in the same commit as its last message
    assert [m.payload for m in spool.pending()] == [b"start#1", b"rows#2", b"status#3", b"end#4"]
    spool.close()
    assert Spool(tmp_path / "spool.db").append("F.1", payload("late")) == 5
