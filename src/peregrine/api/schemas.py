"""Request and response bodies of the public API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The largest integer a request may carry: any larger overflows the datastore's 64-bit integers
#: (and JavaScript's exact integers), so it is refused as invalid rather than failing later.
MAX_INT = 2**53


class Error(BaseModel):
    """Every refusal and failure (4xx) the API answers itself: what went wrong, for people."""

    detail: str


class Strict(BaseModel):
    """A request body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """A response body, built straight from a datastore record (``Model.model_validate(r)``)."""

    model_config = ConfigDict(from_attributes=True)


class ArtifactCallIn(Strict):
    name: str = Field(min_length=1, max_length=200, examples=["Linux.Sys.Users"])
    parameters: dict[str, Any] = Field(default_factory=dict)


class LimitsIn(Strict):
    timeout: float | None = Field(default=None, gt=0, le=7 * 86400)
    progress_timeout: float | None = Field(default=None, gt=0, le=7 * 86400)
    max_rows: int | None = Field(default=None, ge=1, le=MAX_INT)
    max_upload_bytes: int | None = Field(default=None, ge=0, le=MAX_INT)
    cpu_limit: float | None = Field(default=None, gt=0, le=100)
    expires_in: float | None = Field(
        default=None,
        gt=0,
        le=365 * 86400,
        description="Seconds the collection waits for its client to start it before it expires "
        "(Error, 'expired before the client came online'). Default: the server's "
        "flows.scheduled_expiry; for a hunt, the hunt's expiry.",
    )


class CollectionIn(Strict):
    client_id: str = Field(pattern=r"^C\.[0-9a-f]{16}$")
    artifacts: list[ArtifactCallIn] = Field(min_length=1, max_length=50)
    limits: LimitsIn = Field(default_factory=LimitsIn)


class Flow(Out):
    flow_id: str
    client_id: str
    hunt_id: str | None
    artifacts: list[dict[str, Any]]
    creator: str
    state: str
    error: str | None
    created: float
    started: float | None
    finished: float | None
    rows: int
    bytes: int
    uploads: int
    upload_bytes: int
    logs: int
    sources: dict[str, dict[str, Any]]
    expires: float | None = Field(
        default=None, description="When the collection expires if it has not started by then."
    )
    warnings: int = Field(
        default=0,
        description="Warnings of its queries and uploads left out or refused (its log says "
        "which): a Finished collection with warnings may be incomplete.",
    )


class Client(Out):
    client_id: str
    hostname: str | None
    os: str | None
    labels: list[str]
    ip_addresses: list[str]
    last_seen: float
    online: bool


class ClientDetail(Client):
    fqdn: str | None
    release: str | None
    kernel: str | None
    arch: str | None
    mac_addresses: list[str]
    users: list[str]
    agent_version: str | None
    boot_time: float | None
    first_seen: float
    interrogated: float | None


class ClientPage(Out):
    total: int
    items: list[Client]


class DeletedClient(Out):
    """What deleting a client removed."""

    client_id: str
    flows: int = Field(description="Collections deleted with it (with their files and tasks).")
    bytes_freed: int = Field(description="Bytes of collection files removed from the filestore.")
    was_connected: bool = Field(description="It was connected (force) and was disconnected.")


class LabelsIn(Strict):
    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


class RowsPage(Out):
    offset: int
    rows: list[dict[str, Any]]
    total: int


class Upload(Out):
    upload_id: str
    path: str
    stored_name: str
    size: int
    sha256: str


class HuntIn(Strict):
    artifacts: list[ArtifactCallIn] = Field(min_length=1, max_length=50)
    description: str = Field(default="", max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    include_labels: list[str] = Field(default_factory=list, max_length=50)
    exclude_labels: list[str] = Field(default_factory=list, max_length=50)
    os: list[str] = Field(default_factory=list, max_length=10)
    client_limit: int | None = Field(default=None, ge=1, le=MAX_INT)
    expires_in: float = Field(default=7 * 86400, gt=0, le=365 * 86400)
    notifications_per_second: float | None = Field(default=None, ge=0)
    limits: LimitsIn = Field(default_factory=LimitsIn)
    every_seconds: float | None = Field(default=None, ge=60)
    cron: str | None = Field(default=None, max_length=100)
    start: bool = Field(
        default=False,
        description="Start it at once: created Running, as create then start in one request "
        "(needs the permission to start hunts, which creating one needs too).",
    )


class Hunt(Out):
    hunt_id: str
    description: str
    tags: list[str]
    artifacts: list[dict[str, Any]]
    include_labels: list[str]
    exclude_labels: list[str]
    os: list[str]
    client_limit: int | None
    expires: float
    creator: str
    created: float
    started: float | None
    stopped: float | None
    state: str
    notifications_per_second: float | None
    schedule: dict[str, Any] | None
    parent_id: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="On create and start: what may make the hunt do nothing (no known client "
        "matches its conditions).",
    )


class HuntStats(Out):
    scheduled: int
    in_progress: int
    finished: int
    with_results: int
    without_results: int
    errors: int
    cancelled: int
    unresponsive: int
    rows: int
    bytes: int
    waiting: int = 0
    uploads: int = 0
    upload_bytes: int = 0


class HuntClient(Out):
    client_id: str
    flow_id: str
    hostname: str | None
    state: str
    scheduled: float
    rows: int
    error: str | None


class ArtifactSummary(Out):
    name: str
    type: str
    summary: str
    origin: str


class ArtifactText(Strict):
    yaml: str = Field(min_length=1, max_length=1_000_000)


class ArtifactYaml(Out):
    name: str
    yaml: str
    origin: str
    custom: bool = Field(description="A server artifact (stored by PUT /artifacts).")


class Problem(Out):
    file: str
    line: int | None
    artifact: str | None
    severity: str
    message: str


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class Me(Out):
    name: str
    permissions: list[str]
    credential: str
    csrf_token: str | None = None


class UserIn(Strict):
    name: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(default_factory=list)
    password: str | None = Field(default=None, max_length=1024)


class User(Out):
    name: str
    roles: list[str]
    permissions: list[str]
    effective_permissions: list[str]
    created: float
    disabled: float | None
    last_login: float | None


class GrantIn(Strict):
    grant: str = Field(min_length=1, max_length=64, examples=["investigator", "EXECVE"])


class TokenIn(Strict):
    name: str = Field(default="api", min_length=1, max_length=100)
    expires_in: float = Field(default=90 * 86400, gt=0, le=5 * 365 * 86400)


class Token(Out):
    token_id: str
    username: str
    name: str
    created: float
    expires: float
    last_used: float | None
    revoked: float | None


class IssuedToken(Token):
    token: str = Field(description="Shown once; store it now. Peregrine keeps only its hash.")


class AuditEntry(Out):
    time: float
    actor: str
    action: str
    target: str | None
    address: str | None
    parameters: dict[str, Any] | None
    result: str
    reason: str | None


class Status(Out):
    version: str
    clients: int
    connected: int
    flows_in_flight: int
    running_hunts: int
    datastore: str
    #: Whether this frontend is the one doing the singleton work (flow monitor, hunt expiry).
    leader: bool
    #: What does not work right now and why (the bus, presence, the leader election); each
    #: recovers by itself. Empty when all is well.
    degraded: list[str] = []
