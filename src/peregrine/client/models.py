"""What the API returns, as typed values (they mirror ``peregrine.api.schemas``).

Decoding ignores fields it does not know, so a newer server (``/api/v1`` only ever gains
optional fields) never breaks an older client. ``to_dict()`` gives plain JSON-ready data.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "FINAL_FLOW_STATES",
    "FINAL_HUNT_STATES",
    "ArtifactSummary",
    "AuditEntry",
    "Client",
    "ClientDetail",
    "ClientPage",
    "Flow",
    "Hunt",
    "HuntClient",
    "HuntProgress",
    "HuntStats",
    "IssuedToken",
    "Limits",
    "Me",
    "Problem",
    "RowsPage",
    "Status",
    "Token",
    "Upload",
    "User",
]

#: A collection in one of these states changes no more.
FINAL_FLOW_STATES = frozenset({"Finished", "Error", "Cancelled"})
#: A hunt in one of these states schedules no more clients.
FINAL_HUNT_STATES = frozenset({"Stopped", "Archived"})


class Model(msgspec.Struct, kw_only=True):
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


class Limits(Model, omit_defaults=True):
    """Resource limits of a collection (unset: the server's defaults)."""

    timeout: float | None = None
    progress_timeout: float | None = None
    max_rows: int | None = None
    max_upload_bytes: int | None = None
    cpu_limit: float | None = None
    #: Seconds the collection may wait for its client to start it before it expires.
    expires_in: float | None = None


class Client(Model, kw_only=True):
    client_id: str
    hostname: str | None = None
    os: str | None = None
    labels: list[str] = msgspec.field(default_factory=list)
    ip_addresses: list[str] = msgspec.field(default_factory=list)
    last_seen: float = 0.0
    online: bool = False


class ClientDetail(Client, kw_only=True):
    fqdn: str | None = None
    release: str | None = None
    kernel: str | None = None
    arch: str | None = None
    mac_addresses: list[str] = msgspec.field(default_factory=list)
    users: list[str] = msgspec.field(default_factory=list)
    agent_version: str | None = None
    boot_time: float | None = None
    first_seen: float = 0.0
    interrogated: float | None = None


class ClientPage(Model, kw_only=True):
    total: int
    items: list[Client]


class DeletedClient(Model, kw_only=True):
    """What deleting a client removed with it."""

    client_id: str
    flows: int = 0
    bytes_freed: int = 0
    was_connected: bool = False


class Flow(Model, kw_only=True):
    """A collection: its state, counters and per-source status."""

    flow_id: str
    client_id: str
    hunt_id: str | None = None
    artifacts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    creator: str = ""
    state: str
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    rows: int = 0
    bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    logs: int = 0
    sources: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    #: When the collection expires if it has not started by then (None: never, or unknown).
    expires: float | None = None
    #: Warnings of its queries, uploads left out or refused: Finished may still be incomplete.
    warnings: int = 0

    @property
    def done(self) -> bool:
        return self.state in FINAL_FLOW_STATES

    def result_sets(self) -> list[tuple[str, str]]:
        """(artifact, source) of each result set this collection has reported."""
        return [tuple(key.split("/", 1)) if "/" in key else (key, "") for key in self.sources]  # type: ignore[misc]


class RowsPage(Model, kw_only=True):
    offset: int
    rows: list[dict[str, Any]]
    total: int


class Upload(Model, kw_only=True):
    upload_id: str
    path: str
    stored_name: str
    size: int
    sha256: str


class Hunt(Model, kw_only=True):
    hunt_id: str
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    artifacts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    include_labels: list[str] = msgspec.field(default_factory=list)
    exclude_labels: list[str] = msgspec.field(default_factory=list)
    os: list[str] = msgspec.field(default_factory=list)
    client_limit: int | None = None
    expires: float = 0.0
    creator: str = ""
    created: float = 0.0
    started: float | None = None
    stopped: float | None = None
    state: str
    notifications_per_second: float | None = None
    schedule: dict[str, Any] | None = None
    parent_id: str | None = None
    #: On create and start: e.g. that no known client matches the hunt's conditions.
    warnings: list[str] = msgspec.field(default_factory=list)


class HuntStats(Model, kw_only=True):
    """Counted from the hunt's collections; ``done`` is what will change no more."""

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

    @property
    def done(self) -> int:
        return self.finished + self.errors + self.cancelled + self.unresponsive


class HuntProgress(HuntStats, kw_only=True):
    """A live snapshot of a hunt: its state and statistics."""

    state: str


class HuntClient(Model, kw_only=True):
    client_id: str
    flow_id: str
    hostname: str | None = None
    state: str
    scheduled: float = 0.0
    rows: int = 0
    error: str | None = None


class ArtifactSummary(Model, kw_only=True):
    name: str
    type: str
    summary: str = ""
    origin: str = ""


class Problem(Model, kw_only=True):
    file: str
    line: int | None = None
    artifact: str | None = None
    severity: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        what = f" {self.artifact}:" if self.artifact else ""
        return f"{where}:{what} {self.severity}: {self.message}"


class Me(Model, kw_only=True):
    name: str
    permissions: list[str]
    credential: str
    csrf_token: str | None = None


class User(Model, kw_only=True):
    name: str
    roles: list[str]
    permissions: list[str]
    effective_permissions: list[str]
    created: float
    disabled: float | None = None
    last_login: float | None = None


class Token(Model, kw_only=True):
    token_id: str
    username: str
    name: str
    created: float
    expires: float
    last_used: float | None = None
    revoked: float | None = None


class IssuedToken(Token, kw_only=True):
    """A new token: ``token`` is shown this once."""

    token: str


class AuditEntry(Model, kw_only=True):
    time: float
    actor: str
    action: str
    target: str | None = None
    address: str | None = None
    parameters: dict[str, Any] | None = None
    result: str
    reason: str | None = None


class Status(Model, kw_only=True):
    version: str
    clients: int
    connected: int
    flows_in_flight: int
    running_hunts: int
    datastore: str
    leader: bool
    degraded: list[str] = []
