"""Who may see and change what an analyst keeps on the server (notebooks, timelines): its owner
and, once shared, everyone allowed to read results; administrators always."""

from __future__ import annotations

from .roles import SERVER_ADMIN


class SharingError(ValueError):
    """A request on a notebook or timeline that cannot be taken; the message says what to
    change (the API answers 400)."""


class NotVisible(SharingError):
    """It does not exist, or not for this user (404: a private one is not disclosed)."""


class NotAllowed(SharingError):
    """The user sees it but may not do this to it (403)."""


def owns(owner: str, user: str, permissions: frozenset[str]) -> bool:
    """The owner, or an administrator: may delete it and change whether it is shared."""
    return owner == user or SERVER_ADMIN in permissions


def may_open(owner: str, shared: bool, user: str, permissions: frozenset[str]) -> bool:
    """May read it, and edit it given the permission to (a shared one is everyone's)."""
    return shared or owns(owner, user, permissions)


def visible_to(user: str, permissions: frozenset[str]) -> str | None:
    """Whose listing to give: ``user``'s own and shared ones, or None (all) for an
    administrator."""
    return None if SERVER_ADMIN in permissions else user
