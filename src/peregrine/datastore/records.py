"""Plain records the stores return: snapshots of one row, safe to pass between threads."""

from __future__ import annotations

from collections.abc import Iterable
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

    ``sources`` maps ``"Artifact/source"`` to ``{"status", "rows", "error", "elapsed",
    "warnings", "uploads_skipped"}``.
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
    #: The hunt that scheduled this collection, or None for one asked of this client alone.
    hunt_id: str | None = None
    #: When a collection still waiting for its client (Scheduled) gives up: it then ends in
    #: Error, "expired before the client came online". None: the server's default applies.
    expires: float | None = None
    #: Warnings of its queries (those past a query's limit too) and uploads left out for the
    #: upload limit or refused by the server: a Finished collection may still be incomplete.
    warnings: int = 0

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, or None until both are known."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """What the server's in-memory client index needs to match hunts, without the heavy fields."""

    client_id: str
    hostname: str | None
    os: str | None
    labels: list[str]
    last_seen: float
    ip_addresses: list[str]
    #: When it enrolled (only ``ClientStore.enrolled_since`` fills it in).
    first_seen: float = 0.0


HUNT_PAUSED = "Paused"
HUNT_RUNNING = "Running"
HUNT_STOPPED = "Stopped"
HUNT_ARCHIVED = "Archived"

#: Every state a hunt can be in.
HUNT_STATES = (HUNT_PAUSED, HUNT_RUNNING, HUNT_STOPPED, HUNT_ARCHIVED)


@dataclass(frozen=True, slots=True)
class HuntRecord:
    """One hunt: what to collect, on which clients, until when; or a recurring hunt's template.

    ``artifacts`` is ``[{"name": ..., "parameters": {...}}]``; ``limits`` holds the resource
    limits (``timeout``, ``max_rows``, ``max_upload_bytes``, ``cpu_limit``,
    ``progress_timeout``). A template has a ``schedule`` (``{"every_seconds": N}`` or
    ``{"cron": "..."}``) and never runs on clients itself: each run is a new hunt whose
    ``parent_id`` names the template.
    """

    hunt_id: str
    description: str
    tags: list[str]
    artifacts: list[dict[str, Any]]
    limits: dict[str, Any]
    include_labels: list[str]
    exclude_labels: list[str]
    #: Operating systems to run on (as interrogation reports them); empty means any.
    os: list[str]
    client_limit: int | None
    expires: float
    creator: str
    created: float
    started: float | None = None
    stopped: float | None = None
    state: str = HUNT_PAUSED
    #: How fast to push the collection to connected clients when it starts; None or 0: no limit.
    notifications_per_second: float | None = None
    #: What the creator was allowed when creating it: its collections get these permissions.
    permissions: list[str] = field(default_factory=list)
    schedule: dict[str, Any] | None = None
    parent_id: str | None = None
    #: For a template: when the scheduler last created a hunt from it.
    last_run: float | None = None

    @property
    def is_template(self) -> bool:
        """True for a recurring hunt's template (it creates hunts, it is not run on clients)."""
        return self.schedule is not None

    def matches(self, labels: Iterable[str], os: str | None) -> bool:
        """Whether a client with these labels and OS is one this hunt targets.

        A client qualifies with any one of ``include_labels`` (when there are some), none of
        ``exclude_labels``, and an OS in ``os`` (compared without case; when the hunt names
        operating systems, a client whose OS is not yet known does not qualify until
        interrogation finds it).
        """
        have = set(labels)
        if self.include_labels and have.isdisjoint(self.include_labels):
            return False
        if not have.isdisjoint(self.exclude_labels):
            return False
        if self.os:
            return os is not None and os.lower() in {name.lower() for name in self.os}
        return True


@dataclass(frozen=True, slots=True)
class HuntClient:
    """One client of a hunt: its collection's state and counters, and its hostname."""

    client_id: str
    flow_id: str
    scheduled: float
    #: The collection's state (Scheduled, In progress, Finished, Error, Cancelled, Unresponsive).
    state: str
    rows: int
    bytes: int
    error: str | None
    hostname: str | None


@dataclass(frozen=True, slots=True)
class HuntStats:
    """A hunt's statistics, computed from its collections each time (never stored, never stale).

    ``scheduled`` counts every client the hunt was scheduled on; ``waiting`` those whose
    collection has not started; ``with_results``/``without_results`` split ``finished`` by
    whether any rows came back.
    """

    scheduled: int = 0
    in_progress: int = 0
    finished: int = 0
    with_results: int = 0
    without_results: int = 0
    errors: int = 0
    cancelled: int = 0
    unresponsive: int = 0
    rows: int = 0
    bytes: int = 0
    waiting: int = 0
    uploads: int = 0
    upload_bytes: int = 0


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One user: what they hold (roles and individual permissions) and how they log in.

    ``password_hash`` is None for a user who only uses API tokens; it never shows in a repr.
    """

    name: str
    roles: list[str]
    #: Permissions granted individually, beside those the roles give.
    permissions: list[str]
    created: float
    password_hash: str | None = field(default=None, repr=False)
    #: When the user was disabled; None while enabled.
    disabled: float | None = None
    last_login: float | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One API token, without its secret (only a hash of that is stored)."""

    token_id: str
    username: str
    name: str
    created: float
    expires: float
    last_used: float | None = None
    #: When it was revoked; None while it is not.
    revoked: float | None = None

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked is None and now < self.expires


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One browser session (its id is only stored hashed)."""

    username: str
    created: float
    expires: float
    csrf_token: str = field(repr=False)
    address: str | None = None


AUDIT_OK = "ok"
AUDIT_REFUSED = "refused"
AUDIT_ERROR = "error"
#: What an audited action came to: done, refused (permissions, validation), or failed.
AUDIT_RESULTS = (AUDIT_OK, AUDIT_REFUSED, AUDIT_ERROR)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited action: who did what to which target, from where, and how it ended."""

    audit_id: int
    time: float
    actor: str
    action: str
    target: str | None = None
    address: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    result: str = AUDIT_OK
    reason: str | None = None
    #: How the actor authenticated: "password", "session", "token <id> (<name>)", "local".
    credential: str | None = None
