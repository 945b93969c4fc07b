"""Online/offline changes go to the other processes in batches, the latest state winning."""

from __future__ import annotations

import asyncio
from typing import Any

from peregrine.server.presence import IDS_PER_NOTICE, PresenceAnnouncer


def test_changes_are_batched_and_the_latest_state_wins() -> None:
    sent: list[dict[str, Any]] = []

    async def publish(notice: dict[str, Any]) -> None:
        sent.append(notice)

    async def scenario() -> None:
        presence = PresenceAnnouncer(publish, interval=0.05)
        for n in range(IDS_PER_NOTICE + 10):
            presence.online(f"C.{n:016x}")
        presence.offline("C.0000000000000001")  # came and went: only "offline" is told
        presence.offline("C.ffffffffffffffff")
        await asyncio.sleep(0.01)
        assert sent == []  # nothing before the batch interval
        await asyncio.sleep(0.2)
        assert [n["kind"] for n in sent] == ["online", "online", "offline"]
        online = sent[0]["clients"] + sent[1]["clients"]
        assert len(sent[0]["clients"]) == IDS_PER_NOTICE
        assert len(online) == IDS_PER_NOTICE + 9
        assert "C.0000000000000001" not in online
        assert sent[2]["clients"] == ["C.0000000000000001", "C.ffffffffffffffff"]
        sent.clear()
        presence.online("C.0000000000000002")
        await presence.close()  # sends what is left at once
        assert sent == [{"kind": "online", "clients": ["C.0000000000000002"]}]

    asyncio.run(scenario())
