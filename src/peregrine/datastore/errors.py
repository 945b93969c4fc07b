"""The datastore's exceptions: callers catch these, never a driver's own error types."""

from __future__ import annotations


class DatastoreError(Exception):
    """Base of every error the datastore raises on purpose."""


class KeyMismatch(DatastoreError):
    """A client id is already enrolled with a different public key (a forged or broken id)."""


class NotFound(DatastoreError, LookupError):
    """The client or collection named does not exist."""


class Conflict(DatastoreError):
    """The record to create already exists (for example a flow id used twice)."""


class DatastoreUnavailable(DatastoreError):
    """The database does not answer now (PostgreSQL restarting, the network cut): nothing of
    the call is known to be stored; try again in a few seconds."""
