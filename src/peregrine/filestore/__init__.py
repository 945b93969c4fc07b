"""Durable storage of flow results, logs and uploads in a directory (see ``store.py``)."""

from __future__ import annotations

from .durable import DurableBatch
from .errors import StorageFull, UnknownUpload, UploadCorrupt
from .names import CLIENT_ID_RE, FLOW_ID_RE, UPLOAD_ID_RE
from .rowlog import INDEX_EVERY
from .store import Filestore
from .uploads import UploadRecord

__all__ = [
    "CLIENT_ID_RE",
    "FLOW_ID_RE",
    "INDEX_EVERY",
    "UPLOAD_ID_RE",
    "DurableBatch",
    "Filestore",
    "StorageFull",
    "UnknownUpload",
    "UploadCorrupt",
    "UploadRecord",
]
