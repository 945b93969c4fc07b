"""Tasks: the durable queue of requests waiting for a client.

A collection's request is stored here before it is pushed, so it survives a server restart and
reaches a client that is offline now; it leaves the queue once the agent reports the flow
started (or the collection is cancelled).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select

from .database import Database
from .errors import NotFound
from .schema import flows, tasks

#: Client ids per query of ``waiting``.
WAITING_CHUNK = 500


class TaskStore:
    """Requests per client, delivered oldest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, client_id: str, flow_id: str, payload: bytes, now: float) -> None:
        """Queue ``payload`` for the client (once per flow); the flow must exist already."""
        with self._db.write() as conn:
            owner = conn.execute(
                select(flows.c.client_id).where(flows.c.flow_id == flow_id)
            ).scalar_one_or_none()
            if owner != client_id:
                raise NotFound(f"no flow {flow_id} for client {client_id}")
            conn.execute(
                self._db.insert_ignore(tasks).values(
                    flow_id=flow_id, client_id=client_id, payload=payload, created=now
                )
            )

    def pending(self, client_id: str) -> list[tuple[str, bytes]]:
        """(flow_id, payload) of every request the agent has not yet started, oldest first."""
        query = (
            select(tasks.c.flow_id, tasks.c.payload)
            .where(tasks.c.client_id == client_id)
            .order_by(tasks.c.task_id)
        )
        with self._db.read() as conn:
            return [(flow_id, bytes(payload)) for flow_id, payload in conn.execute(query)]

    def waiting(self, client_ids: Iterable[str]) -> set[str]:
        """Which of ``client_ids`` have requests queued (asked in chunks: a frontend may hold
        tens of thousands)."""
        ids, found = list(client_ids), set[str]()
        for start in range(0, len(ids), WAITING_CHUNK):
            chunk = ids[start : start + WAITING_CHUNK]
            query = select(tasks.c.client_id).distinct().where(tasks.c.client_id.in_(chunk))
            with self._db.read() as conn:
                found.update(conn.execute(query).scalars())
        return found

    def delivered(self, flow_id: str) -> None:
        """The agent started the flow: it no longer needs the request."""
        self._remove(flow_id)

    def cancel(self, flow_id: str) -> None:
        """Withdraw the request, so a client that is offline never receives it."""
        self._remove(flow_id)

    def _remove(self, flow_id: str) -> None:
        with self._db.write() as conn:
            conn.execute(delete(tasks).where(tasks.c.flow_id == flow_id))
