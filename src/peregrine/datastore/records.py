"""Plain records the stores return: snapshots of one row, safe to pass between threads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEDULED = "Scheduled"
IN_PROGRESS = "In progress"
FINISHED = "Finished"
ERROR = "Error"
CANCELLED = "Cancelled"
UNRESPONSIVE = "Unresponsive"

#: Every state a collection can be in.
FLOW_STATES = (SCHEDULED, IN_PROGRESS, FINISHED, ERROR, CANCELLED, UNRESPONSIVE)
#: A collection never leaves these.
FINAL_STATES = frozenset({FINISHED, ERROR, CANCELLED})
#: The states the time-out monitor watches.
IN_FLIGHT_STATES = frozenset({SCHEDULED, IN_PROGRESS, UNRESPONSIVE})

#: The interrogation keys ``ClientStore.set_info`` stores; others are ignored.
CLIENT_INFO_TEXT = ("hostname", "fqdn", "os", "release", "kernel", "arch", "agent_version")
CLIENT_INFO_LISTS = ("ip_addresses", "mac_addresses", "users")


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """One enrolled client: its identity, when it was seen, and what interrogation found."""

    client_id: str
    public_key: bytes
    first_seen: float
    last_seen: float
    last_address: str | None = None
    hostname: str | None = None
    fqdn: str | None = None
    os: str | None = None
    release: str | None = None
    kernel: str | None = None
    arch: str | None = None
    ip_addresses: list[str] = field(default_factory=list)
    mac_addresses: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    agent_version: str | None = None
    boot_time: float | None = None
    labels: list[str] = field(default_factory=list)
    interrogated: float | None = None


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One collection on one client: what was asked, its state, and its statistics.

    ``sources`` maps ``"Artifact/source"`` to ``{"status", "rows", "error", "elapsed"}``.
    ``last_seq`` is the highest agent message stored; anything at or below it is a duplicate.
    """

    flow_id: str
    client_id: str
    artifacts: list[dict[str, Any]]
    request: dict[str, Any]
    creator: str
    created: float
    started: float | None = None
    finished: float | None = None
    state: str = SCHEDULED
    error: str | None = None
    rows: int = 0
    bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    logs: int = 0
    last_seq: int = 0
    last_activity: float | None = None
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeout: float | None = None
    progress_timeout: float | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, or None until both are known."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started
