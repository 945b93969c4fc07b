"""What the services need of the frontends: the agents' connections, seen from outside.

The services never import the frontend. The process that runs a frontend gives them a
``Fleet`` (``server/app.py``'s ``Server`` is one) and a ``Leadership`` (``server/leader.py``),
so the same services run behind any frontend, and a test can give them its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Fleet(Protocol):
    """The connected agents, here and on the other frontends."""

    def holds(self, client_id: str) -> bool:
        """Whether the client is connected to this process."""

    def held_here(self) -> Iterable[str]:
        """The clients connected to this process."""

    def is_online(self, client_id: str) -> bool:
        """Whether the client is connected here or (as last heard) to another frontend."""

    def online(self) -> set[str]:
        """Every client connected to any frontend, as last heard."""

    async def push(self, client_id: str, payload: bytes, stored: bool = True) -> bool:
        """Send to the client wherever it is connected; ``stored``: the payload is also a
        stored task, which another frontend can deliver from the datastore."""

    def expect(self, flow_id: str, client_id: str) -> None:
        """A flow was stored for the client: its messages will come (the ingestor's cache)."""

    async def disconnect(self, client_id: str, reason: str) -> None:
        """Close the client's connection to this process, if it has one."""

    async def announce(self, kind: str, **fields: Any) -> None:
        """Tell the other frontends (client changed, hunt started or stopped)."""

    def degraded(self) -> list[str]:
        """What does not work between the frontends right now, and why; empty when all is
        well."""


class Leadership(Protocol):
    """Whether this process does the singleton work (the monitor, hunt expiry, recurrence)."""

    @property
    def is_leader(self) -> bool:
        """Whether this process may do singleton work now."""

    def try_acquire(self) -> bool:
        """Become the leader if nobody is (or say whether this process is); cheap."""
