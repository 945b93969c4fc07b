"""A new client is enrolled with its interrogation: the client, the flow and its task stored
in one piece of the group commit, the request validated once for a burst of new clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peregrine.datastore import SCHEDULED, KeyMismatch
from peregrine.protocol.messages import CollectionRequest, decode_from_server
from peregrine.services.interrogation import INTERROGATION, INTERROGATOR
from tests.services.test_without_frontend import InMemoryFleet, services_alone

NEW, OTHER = "C.00000000000000f1", "C.00000000000000f2"


def test_a_new_client_is_stored_with_its_interrogation(tmp_path: Path) -> None:
    fleet = InMemoryFleet(held=[])

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            datastore = services.datastore
            enrolled, tasks = await services.enroll(NEW, b"n" * 32)
            assert enrolled
            assert (await services.enroll(OTHER, b"o" * 32))[0]
            # Enrolled already (a second connection raced the first): nothing more stored.
            assert await services.enroll(NEW, b"n" * 32) == (False, [])
            with pytest.raises(KeyMismatch):
                await services.enroll(NEW, b"x" * 32)
            [flow] = datastore.collections.list_for_client(NEW)
            assert (flow.creator, flow.state) == (INTERROGATOR, SCHEDULED)
            assert flow.artifacts == [{"name": INTERROGATION, "parameters": {}}]
            [(flow_id, payload)] = datastore.tasks.pending(NEW)
            # What the check-in delivers without reading it back is what was stored.
            assert tasks == [(flow_id, payload)]
            request = decode_from_server(payload)
            assert isinstance(request, CollectionRequest)
            assert request.flow_id == flow_id == flow.flow_id
            assert [d["name"] for d in request.definitions] == [INTERROGATION]
            # The other client's is a copy of the same request under a flow id of its own.
            [other] = datastore.collections.list_for_client(OTHER)
            [(other_id, other_payload)] = datastore.tasks.pending(OTHER)
            assert other.flow_id == other_id != flow_id
            copied = decode_from_server(other_payload)
            assert isinstance(copied, CollectionRequest)
            assert copied.definitions == request.definitions
            assert fleet.sent == []  # delivered with the pending tasks at check-in

    asyncio.run(scenario())


def test_a_burst_of_new_clients_is_enrolled_together_each_with_its_interrogation(
    tmp_path: Path,
) -> None:
    """Enrollments waiting together are one fold of the group commit: each new client gets
    one interrogation, a forger's second key for one of them is refused alone."""
    fleet = InMemoryFleet(held=[])
    burst = [f"C.{i:016x}" for i in range(0x100, 0x140)]

    async def scenario() -> None:
        async with services_alone(tmp_path, fleet) as services:
            datastore = services.datastore
            calls = [
                services.enroll(client_id, client_id.encode()[:32].ljust(32, b"k"))
                for client_id in burst
            ]
            calls.append(services.enroll(burst[0], b"x" * 32))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert datastore.group.batches < len(outcomes)  # folded, not one commit each
            forged = outcomes[-1]
            new = [o for o in outcomes[:-1] if not isinstance(o, BaseException) and o[0]]
            if isinstance(forged, KeyMismatch):
                assert len(new) == len(burst)  # the first came first: it is the client
            else:
                assert forged[0] and len(new) == len(burst) - 1  # the forger came first
            for client_id in burst:
                flows = datastore.collections.list_for_client(client_id)
                assert [f.creator for f in flows] == [INTERROGATOR]
                [(flow_id, _)] = datastore.tasks.pending(client_id)
                assert flow_id == flows[0].flow_id

    asyncio.run(scenario())
