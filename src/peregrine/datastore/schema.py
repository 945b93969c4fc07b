"""The tables, as SQLAlchemy Core metadata: what the code queries and what migrations must build.

Portable types only, so one schema serves SQLite and PostgreSQL: timestamps are float epoch
seconds (``Double``), JSON-shaped fields are JSON text. A test compares this metadata with the
database the migrations build, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from .records import AUDIT_RESULTS, FLOW_STATES, HUNT_STATES

#: Deterministic constraint names, the same on both backends, so later migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: SQLite only aliases the rowid (and so auto-increments) for a column typed exactly INTEGER.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class JSONText(TypeDecorator[Any]):
    """JSON stored as text: the same on both backends and readable with any SQL client."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def _state_check(allowed: tuple[str, ...] = FLOW_STATES) -> CheckConstraint:
    states = ", ".join(f"'{state}'" for state in allowed)
    return CheckConstraint(f"state IN ({states})", name="state")


clients = Table(
    "clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("last_address", Text),
    Column("hostname", Text),
    Column("fqdn", Text),
    Column("os", Text),
    Column("release", Text),
    Column("kernel", Text),
    Column("arch", Text),
    Column("ip_addresses", JSONText, nullable=False),
    Column("mac_addresses", JSONText, nullable=False),
    Column("users", JSONText, nullable=False),
    Column("agent_version", Text),
    Column("boot_time", Double),
    Column("labels", JSONText, nullable=False),
    Column("interrogated", Double),
    Index("ix_clients_first_seen", "first_seen", "client_id"),
)

flows = Table(
    "flows",
    metadata,
    Column("flow_id", String(64), primary_key=True),
    Column(
        "client_id",
        String(64),
        ForeignKey("clients.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("artifacts", JSONText, nullable=False),
    Column("request", JSONText, nullable=False),
    Column("creator", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("started", Double),
    Column("finished", Double),
    Column("state", String(16), nullable=False),
    Column("error", Text),
    Column("row_count", BigInteger, nullable=False, server_default="0"),
    Column("byte_count", BigInteger, nullable=False, server_default="0"),
    Column("upload_count", BigInteger, nullable=False, server_default="0"),
    Column("upload_bytes", BigInteger, nullable=False, server_default="0"),
    Column("log_count", BigInteger, nullable=False, server_default="0"),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("last_activity", Double),
    Column("sources", JSONText, nullable=False),
    Column("timeout", Double),
    Column("progress_timeout", Double),
    # Added by 0002; no foreign key (SQLite cannot add one without rebuilding the table), but
    # hunt_clients links each hunt's flows with foreign keys both ways.
    Column("hunt_id", String(64)),
    # Added by 0004: when a flow still Scheduled expires (see FlowRecord.expires).
    Column("expires", Double),
    # Added by 0005: warnings of the collection's queries, and uploads left out or refused.
    Column("warning_count", BigInteger, nullable=False, server_default="0"),
    _state_check(),
    Index("ix_flows_client_created", "client_id", "created"),
    Index("ix_flows_state", "state"),
    Index("ix_flows_hunt_id", "hunt_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", AutoId, primary_key=True, autoincrement=True),
    Column(
        "flow_id",
        String(64),
        ForeignKey("flows.flow_id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column(
        "client_id",
        String(64),
        ForeignKey("clients.client_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("payload", LargeBinary, nullable=False),
    Column("created", Double, nullable=False),
    Index("ix_tasks_client", "client_id", "task_id"),
)

hunts = Table(
    "hunts",
    metadata,
    Column("hunt_id", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("tags", JSONText, nullable=False),
    Column("artifacts", JSONText, nullable=False),
    Column("limits", JSONText, nullable=False),
    Column("include_labels", JSONText, nullable=False),
    Column("exclude_labels", JSONText, nullable=False),
    Column("os", JSONText, nullable=False),
    Column("client_limit", BigInteger),
    Column("expires", Double, nullable=False),
    Column("creator", Text, nullable=False),
    Column("created", Double, nullable=False),
    Column("started", Double),
    Column("stopped", Double),
    Column("state", String(16), nullable=False),
    Column("notifications_per_second", Double),
    Column("permissions", JSONText, nullable=False),
    Column("schedule", JSONText),
    Column("parent_id", String(64), ForeignKey("hunts.hunt_id", ondelete="SET NULL")),
    Column("last_run", Double),
    _state_check(HUNT_STATES),
    Index("ix_hunts_created", "created", "hunt_id"),
    Index("ix_hunts_state", "state"),
    Index("ix_hunts_parent_id", "parent_id"),
)

#: The hunt manager's index: one row per (hunt, client) ever scheduled. Its primary key is what
#: makes "at most once per client" hold across threads, frontends and restarts.
hunt_clients = Table(
    "hunt_clients",
    metadata,
    Column(
        "hunt_id",
        String(64),
        ForeignKey("hunts.hunt_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "client_id",
        String(64),
        ForeignKey("clients.client_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "flow_id",
        String(64),
        ForeignKey("flows.flow_id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("scheduled", Double, nullable=False),
    Index("ix_hunt_clients_client_id", "client_id"),
    Index("ix_hunt_clients_hunt_scheduled", "hunt_id", "scheduled", "client_id"),
)

users = Table(
    "users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("password_hash", Text),
    Column("roles", JSONText, nullable=False),
    Column("permissions", JSONText, nullable=False),
    Column("created", Double, nullable=False),
    Column("disabled", Double),
    Column("last_login", Double),
)

#: API tokens: only the SHA-256 of each secret is stored.
tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column(
        "username",
        String(128),
        ForeignKey("users.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created", Double, nullable=False),
    Column("expires", Double, nullable=False),
    Column("last_used", Double),
    Column("revoked", Double),
    Index("ix_tokens_username", "username", "created"),
)

#: Browser sessions, keyed by the SHA-256 of the session id.
sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column(
        "username",
        String(128),
        ForeignKey("users.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created", Double, nullable=False),
    Column("expires", Double, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("address", Text),
    Index("ix_sessions_username", "username"),
    Index("ix_sessions_expires", "expires"),
)

#: The audit log. ``actor`` is plain text, not a foreign key: deleting a user keeps their history.
audit = Table(
    "audit",
    metadata,
    Column("audit_id", AutoId, primary_key=True, autoincrement=True),
    Column("time", Double, nullable=False),
    Column("actor", Text, nullable=False),
    Column("credential", Text),
    Column("address", Text),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("parameters", JSONText, nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", Text),
    CheckConstraint(
        "result IN ({})".format(", ".join(f"'{result}'" for result in AUDIT_RESULTS)),
        name="result",
    ),
    Index("ix_audit_time", "time", "audit_id"),
    Index("ix_audit_actor", "actor", "audit_id"),
    Index("ix_audit_action", "action", "audit_id"),
    Index("ix_audit_target", "target", "audit_id"),
)


#: Notebooks (``notebooks/``): an analyst's cells over the analysis engine. ``owner`` is plain
#: text like the audit's actor, and the hunt or client a notebook is about is not a foreign key:
#: a notebook is part of an investigation's record and outlives what it describes.
notebooks = Table(
    "notebooks",
    metadata,
    Column("notebook_id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("shared", Integer, nullable=False, server_default="0"),
    Column("hunt_id", String(64)),
    Column("client_id", String(64)),
    Column("created", Double, nullable=False),
    Column("modified", Double, nullable=False),
    Index("ix_notebooks_owner", "owner", "modified"),
    Index("ix_notebooks_modified", "modified", "notebook_id"),
)

#: A notebook's cells in order, each with its last result (rows capped) so opening a notebook
#: reruns nothing.
notebook_cells = Table(
    "notebook_cells",
    metadata,
    Column(
        "notebook_id",
        String(64),
        ForeignKey("notebooks.notebook_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("cell_id", String(32), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("chart", JSONText),
    Column("result", JSONText),
    Column("ran", Double),
    Column("duration", Double),
    Column("ran_by", Text),
    CheckConstraint("kind IN ('markdown', 'sql')", name="kind"),
    Index("ix_notebook_cells_position", "notebook_id", "position"),
)

#: Timelines: sources (result sets, hunts, event logs) merged on one time axis, as definitions.
timelines = Table(
    "timelines",
    metadata,
    Column("timeline_id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("shared", Integer, nullable=False, server_default="0"),
    Column("sources", JSONText, nullable=False),
    Column("created", Double, nullable=False),
    Column("modified", Double, nullable=False),
    Index("ix_timelines_owner", "owner", "modified"),
    Index("ix_timelines_modified", "modified", "timeline_id"),
)

#: Alert rules (``peregrine.alerts``): the current version of each; ``definition`` holds the
#: artifacts read, the condition and the optional window (JSON, so a new field needs no
#: migration). Every saved version is also kept in ``alert_rule_versions``.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("enabled", Integer, nullable=False),
    Column("builtin", Integer, nullable=False),
    Column("definition", JSONText, nullable=False),
    Column("modified", Double, nullable=False),
    Column("modified_by", Text, nullable=False),
)

alert_rule_versions = Table(
    "alert_rule_versions",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("enabled", Integer, nullable=False),
    Column("definition", JSONText, nullable=False),
    Column("modified", Double, nullable=False),
    Column("modified_by", Text, nullable=False),
)

#: Alerts raised by rules. ``alert_key`` is unique: (rule, client, artifact, source, event seq),
#: or (rule, window, group) for a windowed rule, so a rule fires once per event or window
#: whatever the frontends, races and redeliveries.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", AutoId, primary_key=True, autoincrement=True),
    Column("alert_key", String(512), nullable=False, unique=True),
    Column("rule_id", String(128), nullable=False),
    Column("rule_version", BigInteger, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("time", Double, nullable=False),
    Column("client_id", String(64)),
    Column("hostname", Text),
    Column("artifact", Text),
    Column("source", Text),
    Column("event_seq", BigInteger),
    Column("summary", Text, nullable=False),
    Column("rows", JSONText, nullable=False),
    Column("state", String(16), nullable=False),
    Column("acked_by", Text),
    Column("acked_at", Double),
    Column("ack_comment", Text),
    CheckConstraint("state IN ('open', 'acknowledged')", name="state"),
    Index("ix_alerts_time", "time", "alert_id"),
    Index("ix_alerts_state", "state", "alert_id"),
    Index("ix_alerts_rule_id", "rule_id", "alert_id"),
    Index("ix_alerts_client_id", "client_id", "alert_id"),
)

#: What windowed rules counted: one row per distinct member (a client id...) seen by a rule in
#: a window for a group, written by whichever frontend received the event, so the count is
#: the fleet's.
alert_window_hits = Table(
    "alert_window_hits",
    metadata,
    Column("rule_id", String(128), primary_key=True),
    Column("window_start", Double, primary_key=True),
    Column("group_key", String(256), primary_key=True),
    Column("member", String(256), primary_key=True),
)

#: Event monitoring: which CLIENT_EVENT artifacts run on which clients (``labels`` empty: all).
#: Every change bumps ``version`` past every other row's; an unassigned artifact stays as a
#: ``removed`` row so the highest version is the version of the whole set.
event_assignments = Table(
    "event_assignments",
    metadata,
    Column("artifact", String(256), primary_key=True),
    Column("parameters", JSONText, nullable=False),
    Column("labels", JSONText, nullable=False),
    Column("permissions", JSONText, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("removed", Integer, nullable=False, server_default="0"),
    Column("modified", Double, nullable=False),
    Column("modified_by", Text, nullable=False),
    Index("ix_event_assignments_version", "version"),
)

#: How each assigned event artifact runs on each client, as its agent last reported.
event_status = Table(
    "event_status",
    metadata,
    Column(
        "client_id",
        String(64),
        ForeignKey("clients.client_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("artifact", String(256), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("error", Text),
    Column("restarts", BigInteger, nullable=False, server_default="0"),
    Column("reported", Double, nullable=False),
    Column("updated", Double, nullable=False),
)
