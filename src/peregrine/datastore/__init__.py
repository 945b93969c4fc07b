"""The datastore: clients, collections and tasks, in SQLite (embedded) or PostgreSQL.

``open_datastore(url)`` picks the backend from the URL and migrates the schema to head.

Exceptions::

    DatastoreError        anything the datastore raises on purpose
    ├── KeyMismatch       a client id enrolled with another key
    ├── NotFound          the client or flow named does not exist (also a LookupError)
    └── Conflict          the record to create already exists
"""

from __future__ import annotations

from .clients import ClientStore
from .collections import CollectionStore
from .errors import Conflict, DatastoreError, KeyMismatch, NotFound
from .records import (
    CANCELLED,
    ERROR,
    FINAL_STATES,
    FINISHED,
    FLOW_STATES,
    IN_FLIGHT_STATES,
    IN_PROGRESS,
    SCHEDULED,
    UNRESPONSIVE,
    ClientRecord,
    FlowRecord,
)
from .store import Datastore, open_datastore
from .tasks import TaskStore

__all__ = [
    "CANCELLED",
    "ERROR",
    "FINAL_STATES",
    "FINISHED",
    "FLOW_STATES",
    "IN_FLIGHT_STATES",
    "IN_PROGRESS",
    "SCHEDULED",
    "UNRESPONSIVE",
    "ClientRecord",
    "ClientStore",
    "CollectionStore",
    "Conflict",
    "Datastore",
    "DatastoreError",
    "FlowRecord",
    "KeyMismatch",
    "NotFound",
    "TaskStore",
    "open_datastore",
]
