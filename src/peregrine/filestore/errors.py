"""What the filestore raises, so the server can answer the agent correctly."""

from __future__ import annotations

import errno

#: errno values that mean "no room": the write is rolled back and retried later by the agent.
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StorageFull(Exception):
    """The filestore cannot take more data now (disk or quota full, or below the free-space floor).

    Nothing was committed by the call that raised it: the server must not acknowledge, and the
    agent keeps the data in its spool and sends it again later. Each call checks afresh, so the
    filestore recovers by itself when space returns.
    """


class UploadCorrupt(Exception):
    """A finished upload's size or SHA-256 is not what the agent declared.

    The received bytes are kept aside (renamed into the flow's ``uploads.corrupt`` folder) for
    inspection, and the upload starts again from offset 0 if the agent retries.
    """


class UnknownUpload(LookupError):
    """A chunk or finish for an upload that was never started in this flow."""


def is_space_error(exc: OSError) -> bool:
    """True for the errors that mean the filesystem (or a quota) is full."""
    return exc.errno in SPACE_ERRNOS
