"""Passwords: argon2id hashes, a strength floor, and a failure path that takes as long as success.

Only the hash is stored (argon2's PHC string carries its own salt and parameters). When the
library's recommended parameters change, ``needs_rehash`` says so at the next good login and the
caller stores a fresh hash. A login for a user that does not exist verifies against a dummy hash,
so response time does not tell an attacker which user names exist.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
#: Longer input is refused before hashing: hashing megabytes per attempt is a cheap DoS.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


class WeakPassword(ValueError):
    """The password is refused; the message says what to change."""


def check_password_strength(password: str, username: str | None = None) -> None:
    """Refuse passwords that are short, absurdly long, one repeated character, or the user name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 4:
        raise WeakPassword("a password needs more than three different characters")
    if username and username.lower() in password.lower():
        raise WeakPassword("a password must not contain the user name")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) to store for ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the stored hash; False for a hash argon2 cannot read."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (store a new one)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def waste_verification(password: str) -> None:
    """Spend what a real verification costs, for the unknown-user and disabled-user paths."""
    verify_password(_dummy_hash(), password)
