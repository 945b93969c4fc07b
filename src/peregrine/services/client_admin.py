"""Deleting a client: an administrator removes an enrolled client and everything kept of it.

What goes: the client's row (labels, interrogation facts), its collections, their tasks, its
rows in hunts (hunt statistics are derived from those, so they stay exact) — one datastore
transaction — then its collections' files in the filestore. A connected client is refused
unless ``force`` is given: then its connection is closed (here, and by every other frontend
process, told through the bus). Its agent, if it keeps running with the enrollment secret,
comes back as a new client with the same id and nothing of the old one: to retire a machine for
good, remove the agent first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peregrine.datastore import NotFound

if TYPE_CHECKING:
    from peregrine.services.app import Services

log = logging.getLogger(__name__)

#: The close reason a deleted client's connection gets.
DELETED = "this client was deleted by an administrator"


class UnknownClient(LookupError):
    """No client has this id."""


class ClientConnected(Exception):
    """The client is connected and ``force`` was not given; the message says what to do."""


@dataclass(frozen=True)
class DeletedClient:
    client_id: str
    #: Collections removed with it.
    flows: int
    #: Bytes of their files removed from the filestore.
    bytes_freed: int
    #: Whether it was connected (and so was disconnected).
    was_connected: bool


async def delete_client(services: Services, client_id: str, force: bool = False) -> DeletedClient:
    """Delete the client, its collections, tasks, hunt rows, labels, files and events."""
    if await asyncio.to_thread(services.datastore.clients.get, client_id) is None:
        raise UnknownClient(f"no client {client_id}")
    connected = services.fleet.is_online(client_id)
    if connected and not force:
        raise ClientConnected(
            f"{client_id} is connected; delete it with force to disconnect it first (its agent "
            "enrolls again as a new client if it keeps running: remove the agent to retire it)"
        )
    try:
        flow_ids = await asyncio.to_thread(services.datastore.clients.forget, client_id)
    except NotFound:
        raise UnknownClient(f"no client {client_id}") from None
    # From here on a new connection with this id enrolls afresh; the old one is closed.
    await forget_locally(services, client_id)
    await services.fleet.announce("client_changed", client_id=client_id)  # the others do the same
    freed = await asyncio.to_thread(services.filestore.remove_flows, client_id, flow_ids)
    freed += await asyncio.to_thread(services.event_monitoring.files.remove_client, client_id)
    log.info(
        "deleted client %s: %d collections, %d bytes of files%s",
        client_id, len(flow_ids), freed, " (it was connected)" if connected else "",
    )  # fmt: skip
    return DeletedClient(client_id, len(flow_ids), freed, connected)


async def forget_locally(services: Services, client_id: str) -> None:
    """A client is gone from the datastore: drop it from this process's index and close its
    connection here, if it has one."""
    services.client_index.remove(client_id)
    await services.fleet.disconnect(client_id, DELETED)
