"""Permissions and the roles that bundle them.

A user holds roles and, optionally, individual permissions granted beside them; what the user may
do is the union. Permissions are coarse on purpose: each names one kind of action an endpoint of
the API is guarded by, and ``EXECVE`` and ``FILESYSTEM_READ`` are also the query engine's plugin
permissions, so a collection carries what its creator holds of those (``query_permissions``) and
an artifact's ``required_permissions`` are enforced when it is scheduled.
"""

from __future__ import annotations

from collections.abc import Iterable

from peregrine.engine.context import KNOWN_PERMISSIONS

#: See clients, collections, hunts and their results, artifacts and server status.
READ_RESULTS = "READ_RESULTS"
#: Add and remove client labels.
LABEL_CLIENT = "LABEL_CLIENT"
#: Start and cancel collections on one client.
COLLECT_CLIENT = "COLLECT_CLIENT"
#: Create, start, pause, stop and archive hunts (collections on many clients).
START_HUNT = "START_HUNT"
#: Run artifacts that execute programs on endpoints (a query engine permission).
EXECVE = "EXECVE"
#: Run artifacts that read files or upload them from endpoints (a query engine permission).
FILESYSTEM_READ = "FILESYSTEM_READ"
#: Add and change custom artifacts.
ARTIFACT_WRITER = "ARTIFACT_WRITER"
#: Run SQL over collected results on the server (``POST /analysis``); what a query reads
#: still needs READ_RESULTS.
ANALYZE = "ANALYZE"
#: Read the Prometheus metrics (``/metrics``): counts and latencies, never results.
READ_METRICS = "READ_METRICS"
#: Acknowledge alerts raised by rules (seeing them needs only READ_RESULTS).
ACKNOWLEDGE_ALERTS = "ACKNOWLEDGE_ALERTS"
#: Manage users, roles and other users' tokens, read the audit log, change server settings.
SERVER_ADMIN = "SERVER_ADMIN"

#: Every permission, in the order they are listed to people.
PERMISSIONS: tuple[str, ...] = (
    READ_RESULTS,
    LABEL_CLIENT,
    COLLECT_CLIENT,
    START_HUNT,
    EXECVE,
    FILESYSTEM_READ,
    ARTIFACT_WRITER,
    ANALYZE,
    READ_METRICS,
    ACKNOWLEDGE_ALERTS,
    SERVER_ADMIN,
)

ADMINISTRATOR = "administrator"
INVESTIGATOR = "investigator"
ANALYST = "analyst"
READER = "reader"
API = "api"
MONITORING = "monitoring"

#: Each role's permissions. Only administrators may run programs on endpoints (``EXECVE``)
#: unless someone is granted it individually.
ROLES: dict[str, frozenset[str]] = {
    ADMINISTRATOR: frozenset(PERMISSIONS),
    INVESTIGATOR: frozenset(
        {
            READ_RESULTS,
            LABEL_CLIENT,
            COLLECT_CLIENT,
            START_HUNT,
            FILESYSTEM_READ,
            ARTIFACT_WRITER,
            ANALYZE,
            ACKNOWLEDGE_ALERTS,
        }
    ),
    ANALYST: frozenset({READ_RESULTS, LABEL_CLIENT, COLLECT_CLIENT, FILESYSTEM_READ, ANALYZE}),
    READER: frozenset({READ_RESULTS}),
    # For automation: everything an analyst does, and hunts.
    API: frozenset(
        {READ_RESULTS, LABEL_CLIENT, COLLECT_CLIENT, START_HUNT, FILESYSTEM_READ, ANALYZE}
    ),
    # For Prometheus: the metrics and nothing else, so a scraper's token read from its
    # configuration cannot read what endpoints sent.
    MONITORING: frozenset({READ_METRICS}),
}

if not frozenset(PERMISSIONS) >= KNOWN_PERMISSIONS:  # pragma: no cover - a guard for developers
    raise RuntimeError("every query engine permission must be a user permission too")


def is_role(name: str) -> bool:
    """Whether ``name`` is a role (role names are lower case)."""
    return name in ROLES


def is_permission(name: str) -> bool:
    """Whether ``name`` is a permission (permission names are upper case)."""
    return name in PERMISSIONS


def parse_grant(item: str) -> tuple[str, str]:
    """Read a role or permission name as people type it: ``("role", name)`` or
    ``("permission", NAME)``; ValueError names the valid ones."""
    cleaned = item.strip()
    if cleaned.lower() in ROLES:
        return "role", cleaned.lower()
    if cleaned.upper() in PERMISSIONS:
        return "permission", cleaned.upper()
    raise ValueError(
        f"{item!r} is neither a role ({', '.join(ROLES)}) "
        f"nor a permission ({', '.join(PERMISSIONS)})"
    )


def check_roles(roles: Iterable[str]) -> list[str]:
    """The roles, sorted and unique; ValueError for a name that is not a role."""
    wanted = set(roles)
    unknown = sorted(wanted - ROLES.keys())
    if unknown:
        raise ValueError(f"unknown role {', '.join(unknown)}: roles are {', '.join(ROLES)}")
    return sorted(wanted)


def check_permissions(permissions: Iterable[str]) -> list[str]:
    """The permissions, sorted and unique; ValueError for a name that is not a permission."""
    wanted = set(permissions)
    unknown = sorted(wanted - set(PERMISSIONS))
    if unknown:
        raise ValueError(
            f"unknown permission {', '.join(unknown)}: permissions are {', '.join(PERMISSIONS)}"
        )
    return sorted(wanted)


def effective_permissions(roles: Iterable[str], grants: Iterable[str] = ()) -> frozenset[str]:
    """What roles and individual grants allow together. Unknown names allow nothing (a role
    removed from a later version must not keep or widen anyone's access)."""
    allowed: set[str] = set()
    for role in roles:
        allowed |= ROLES.get(role, frozenset())
    allowed.update(grant for grant in grants if grant in PERMISSIONS)
    return frozenset(allowed)


def roles_granting(permission: str, roles: Iterable[str]) -> list[str]:
    """Which of ``roles`` include ``permission`` (to explain why revoking it alone cannot work)."""
    return sorted(role for role in roles if permission in ROLES.get(role, frozenset()))


def query_permissions(permissions: Iterable[str]) -> frozenset[str]:
    """The query engine permissions among a user's: what a collection they create carries."""
    return frozenset(permissions) & KNOWN_PERMISSIONS
