"""API tokens and browser session ids: how they are made, written, parsed and stored hashed.

A token reads ``prg_<token id>_<secret>``. The prefix lets secret scanners recognise a leaked
token; the id (16 hex digits, no underscore) finds the row without a scan; only the SHA-256 of
the secret is stored. A fast hash suffices because the secret has 256 random bits: there is
nothing to brute-force, unlike a password. Session ids are stored the same way, so a copy of the
database lets nobody act as a logged-in user.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "prg_"  # noqa: S105 - a marker, not a secret
_TOKEN = re.compile(r"prg_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
_ID = re.compile(r"[0-9a-f]{16}")
#: Compared against when a token id is unknown, so that path costs the same as a wrong secret.
_NO_HASH = "0" * 64


def new_token() -> tuple[str, str, str]:
    """A new token: ``(token_id, secret, the whole token as the user gets it)``."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"{TOKEN_PREFIX}{token_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token.strip())
    return None if match is None else (match.group(1), match.group(2))


def is_token_id(value: str) -> bool:
    """Whether ``value`` has the shape of a token id (16 lower-case hex digits)."""
    return _ID.fullmatch(value) is not None


def hash_secret(secret: str) -> str:
    """What is stored for a token secret or a session id: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(stored_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash``, in time that does not depend on where they
    differ; None (an unknown id) costs the same and never matches."""
    same = hmac.compare_digest(stored_hash or _NO_HASH, hash_secret(secret))
    return same and stored_hash is not None


def new_session_id() -> str:
    """A new browser session id (the cookie's value)."""
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    """A new CSRF token, returned to the browser and required on its state-changing requests."""
    return secrets.token_urlsafe(32)
