"""The datastore: clients, collections, tasks, hunts, users and the audit log, in SQLite
(embedded) or PostgreSQL.

``open_datastore(url)`` picks the backend from the URL and migrates the schema to head.

Exceptions::

    DatastoreError        anything the datastore raises on purpose
    ├── KeyMismatch       a client id enrolled with another key
    ├── NotFound          the client, flow, hunt, user or token named does not exist
    │                     (also a LookupError)
    ├── Conflict          the record to create already exists
    └── DatastoreUnavailable  the database does not answer now: try again shortly
"""

from __future__ import annotations

from .audit import AuditStore
from .clients import ClientStore
from .collections import CollectionStore
from .errors import Conflict, DatastoreError, DatastoreUnavailable, KeyMismatch, NotFound
from .flow_runs import FlowStep, StepResult
from .hunts import HuntStore, new_hunt_id
from .records import (
    AUDIT_ERROR,
    AUDIT_OK,
    AUDIT_REFUSED,
    AUDIT_RESULTS,
    CANCELLED,
    ERROR,
    FINAL_STATES,
    FINISHED,
    FLOW_STATES,
    HUNT_ARCHIVED,
    HUNT_PAUSED,
    HUNT_RUNNING,
    HUNT_STATES,
    HUNT_STOPPED,
    IN_FLIGHT_STATES,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    AuditEntry,
    ClientRecord,
    ClientSummary,
    FlowRecord,
    HuntClient,
    HuntRecord,
    HuntStats,
    SessionRecord,
    TokenRecord,
    UserRecord,
)
from .store import Datastore, open_datastore
from .tasks import TaskStore
from .users import SessionStore, TokenStore, UserStore

__all__ = [
    "AUDIT_ERROR",
    "AUDIT_OK",
    "AUDIT_REFUSED",
    "AUDIT_RESULTS",
    "CANCELLED",
    "ERROR",
    "FINAL_STATES",
    "FINISHED",
    "FLOW_STATES",
    "HUNT_ARCHIVED",
    "HUNT_PAUSED",
    "HUNT_RUNNING",
    "HUNT_STATES",
    "HUNT_STOPPED",
    "IN_FLIGHT_STATES",
    "IN_PROGRESS",
    "SCHEDULED",
    "UNRESPONSIVE",
    "AuditEntry",
    "AuditStore",
    "ClientRecord",
    "ClientStore",
    "ClientSummary",
    "CollectionStore",
    "Conflict",
    "Datastore",
    "DatastoreError",
    "DatastoreUnavailable",
    "FlowRecord",
    "FlowStep",
    "HuntClient",
    "HuntRecord",
    "HuntStats",
    "HuntStore",
    "KeyMismatch",
    "NotFound",
    "SessionRecord",
    "SessionStore",
    "StepResult",
    "TaskStore",
    "TokenRecord",
    "TokenStore",
    "UserRecord",
    "UserStore",
    "new_hunt_id",
    "open_datastore",
]
