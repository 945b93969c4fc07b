"""Users, roles and permissions, passwords, API tokens, browser sessions and the audit log.

``Accounts`` manages users and authenticates them (password, token or session) into a
``Principal``; ``Principal.require(permission)`` guards an action; ``AuditLog.record`` records it.
"""

from __future__ import annotations

from .accounts import (
    DEFAULT_TOKEN_TTL,
    SESSION_TTL,
    AccountError,
    Accounts,
    IssuedToken,
    NewSession,
    PermissionDenied,
    Principal,
    normalize_username,
    permissions_of,
)
from .audit import AuditLog, default_audit_path, redact
from .passwords import MIN_PASSWORD_LENGTH, WeakPassword
from .roles import (
    ADMINISTRATOR,
    ANALYST,
    ANALYZE,
    API,
    ARTIFACT_WRITER,
    COLLECT_CLIENT,
    EXECVE,
    FILESYSTEM_READ,
    INVESTIGATOR,
    LABEL_CLIENT,
    PERMISSIONS,
    READ_RESULTS,
    READER,
    ROLES,
    SERVER_ADMIN,
    START_HUNT,
    effective_permissions,
    query_permissions,
)

__all__ = [
    "ADMINISTRATOR",
    "ANALYST",
    "ANALYZE",
    "API",
    "ARTIFACT_WRITER",
    "COLLECT_CLIENT",
    "DEFAULT_TOKEN_TTL",
    "EXECVE",
    "FILESYSTEM_READ",
    "INVESTIGATOR",
    "LABEL_CLIENT",
    "MIN_PASSWORD_LENGTH",
    "PERMISSIONS",
    "READER",
    "READ_RESULTS",
    "ROLES",
    "SERVER_ADMIN",
    "SESSION_TTL",
    "START_HUNT",
    "AccountError",
    "Accounts",
    "AuditLog",
    "IssuedToken",
    "NewSession",
    "PermissionDenied",
    "Principal",
    "WeakPassword",
    "default_audit_path",
    "effective_permissions",
    "normalize_username",
    "permissions_of",
    "query_permissions",
    "redact",
]
