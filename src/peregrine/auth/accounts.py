"""Accounts: managing users, and turning a password, API token or session id into a Principal.

``Accounts`` is what the API and the ``peregrine users`` command use; it checks names, roles and
password strength, makes every secret and hashes it, and applies the rules (a disabled user's
tokens and sessions stop working at once; the last administrator cannot be removed). It does not
audit: callers know the address and the action and record it with ``AuditLog``.
"""

from __future__ import annotations

import getpass
import hmac
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from peregrine.datastore import (
    Datastore,
    NotFound,
    SessionRecord,
    TokenRecord,
    UserRecord,
)

from . import passwords, tokens
from .roles import (
    PERMISSIONS,
    SERVER_ADMIN,
    check_permissions,
    check_roles,
    effective_permissions,
    parse_grant,
    query_permissions,
    roles_granting,
)

#: A browser session lasts this long from login, however active it is.
SESSION_TTL = 12 * 3600.0
#: An API token's lifetime when none is given.
DEFAULT_TOKEN_TTL = 30 * 86400.0
#: A token's ``last_used`` is written at most this often.
TOKEN_TOUCH_SECONDS = 60.0
_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,127}")
_TOKEN_NAME_MAX = 100


class AccountError(ValueError):
    """A request about accounts that cannot be done as asked; the message says why."""


class PermissionDenied(Exception):
    """The principal lacks a permission the action needs."""

    def __init__(self, principal: Principal, permission: str) -> None:
        super().__init__(f"{principal.name} lacks the {permission} permission")
        self.principal = principal
        self.permission = permission


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting, with what they may do; what an authenticated request carries."""

    name: str
    permissions: frozenset[str]
    #: How they authenticated: "password", "session", "token <id> (<name>)" or "local".
    credential: str
    token_id: str | None = None
    #: For a browser session: the token its state-changing requests must echo.
    csrf_token: str | None = field(default=None, repr=False)

    @classmethod
    def local(cls) -> Principal:
        """Someone at the server's console (``peregrine users``): every permission, acting as
        ``local:<operating system user>``."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
        return cls(f"local:{user}", frozenset(PERMISSIONS), "local")

    def has(self, permission: str) -> bool:
        """Whether the principal holds ``permission``."""
        return permission in self.permissions

    def require(self, *permissions: str) -> None:
        """Raise PermissionDenied for the first of ``permissions`` the principal lacks."""
        for permission in permissions:
            if permission not in self.permissions:
                raise PermissionDenied(self, permission)

    @property
    def query_permissions(self) -> frozenset[str]:
        """The query engine permissions a collection this principal creates carries."""
        return query_permissions(self.permissions)

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether a state-changing request may proceed: a session must present its CSRF
        token; tokens and passwords travel in headers a foreign site cannot set, so pass."""
        if self.csrf_token is None:
            return True
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token.encode()
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: ``token`` is shown to its owner once and is stored nowhere."""

    token: str = field(repr=False)
    record: TokenRecord


@dataclass(frozen=True, slots=True)
class NewSession:
    """A new browser session: the cookie value and the CSRF token, both shown only now."""

    session_id: str = field(repr=False)
    csrf_token: str = field(repr=False)
    record: SessionRecord


def normalize_username(name: str) -> str:
    """The stored form of a user name (lower case); AccountError for one that cannot be."""
    cleaned = name.strip().lower()
    if not _NAME.fullmatch(cleaned):
        raise AccountError(
            f"invalid user name {name!r}: use 1-128 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return cleaned


def permissions_of(user: UserRecord) -> frozenset[str]:
    """What the user may do: their roles' permissions and individual grants together."""
    return effective_permissions(user.roles, user.permissions)


class Accounts:
    """Users, API tokens and sessions over one datastore. Thread-safe (the datastore is)."""

    def __init__(self, datastore: Datastore, clock: Callable[[], float] = time.time) -> None:
        self._store = datastore
        self._clock = clock

    # -- users ---------------------------------------------------------------------------------

    def create_user(
        self,
        name: str,
        password: str | None = None,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
    ) -> UserRecord:
        """A new user; with no password they can only use API tokens. Conflict if it exists."""
        username = normalize_username(name)
        try:
            role_list = check_roles(roles)
            permission_list = check_permissions(permissions)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        password_hash = None
        if password is not None:
            self._check_password(password, username)
            password_hash = passwords.hash_password(password)
        record = UserRecord(
            name=username,
            roles=role_list,
            permissions=permission_list,
            created=self._clock(),
            password_hash=password_hash,
        )
        self._store.users.create(record)
        return record

    def get_user(self, name: str) -> UserRecord | None:
        """The user, or None (also for a name that could not exist)."""
        try:
            return self._store.users.get(normalize_username(name))
        except AccountError:
            return None

    def require_user(self, name: str) -> UserRecord:
        """The user; NotFound if there is none."""
        user = self.get_user(name)
        if user is None:
            raise NotFound(f"no user {name}")
        return user

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        return self._store.users.list(limit=1_000_000)

    def set_password(self, name: str, password: str | None) -> None:
        """Change (or with None remove) the user's password, ending their browser sessions."""
        user = self.require_user(name)
        password_hash = None
        if password is not None:
            self._check_password(password, user.name)
            password_hash = passwords.hash_password(password)
        self._store.users.set_password_hash(user.name, password_hash)
        self._store.sessions.delete_for_user(user.name)

    def grant(self, name: str, item: str) -> UserRecord:
        """Give the user a role or a single permission (``item`` names either)."""
        user = self.require_user(name)
        kind, value = self._parse(item)
        if kind == "role":
            return self._store.users.change_grants(user.name, add_roles=[value])
        return self._store.users.change_grants(user.name, add_permissions=[value])

    def revoke(self, name: str, item: str) -> UserRecord:
        """Take a role or an individually granted permission away from the user.

        A permission the user holds through a role cannot be taken alone: AccountError names
        the roles to revoke instead. Revoking what the user does not hold changes nothing.
        """
        user = self.require_user(name)
        kind, value = self._parse(item)
        if kind == "role":
            self._keep_an_administrator(user, new_roles=[r for r in user.roles if r != value])
            return self._store.users.change_grants(user.name, remove_roles=[value])
        via = roles_granting(value, user.roles)
        if via:
            raise AccountError(
                f"{user.name} has {value} through the role {', '.join(via)}: revoke the role "
                "(and grant what should stay individually)"
            )
        return self._store.users.change_grants(user.name, remove_permissions=[value])

    def set_roles(self, name: str, new_roles: Iterable[str]) -> UserRecord:
        """Replace the user's roles (their individual permissions stay)."""
        user = self.require_user(name)
        try:
            wanted = check_roles(new_roles)
        except ValueError as exc:
            raise AccountError(str(exc)) from None
        self._keep_an_administrator(user, new_roles=wanted)
        return self._store.users.set_roles(user.name, wanted)

    def disable(self, name: str) -> UserRecord:
        """Stop the user logging in and end their sessions; their tokens stop working too."""
        user = self.require_user(name)
        if user.disabled is not None:
            return user
        self._keep_an_administrator(user, disabled=True)
        self._store.users.set_disabled(user.name, self._clock())
        return self.require_user(user.name)

    def enable(self, name: str) -> UserRecord:
        """Let a disabled user log in again (tokens that have not expired work again)."""
        user = self.require_user(name)
        self._store.users.set_disabled(user.name, None)
        return self.require_user(user.name)

    def delete_user(self, name: str) -> None:
        """Remove the user with their tokens and sessions (the audit log keeps their name)."""
        user = self.require_user(name)
        self._keep_an_administrator(user, disabled=True)
        self._store.users.delete(user.name)

    # -- authentication ------------------------------------------------------------------------

    def authenticate_password(self, name: str, password: str) -> Principal | None:
        """The principal for a correct user name and password, else None.

        Unknown and disabled users cost one argon2 verification like everyone else, so timing
        does not reveal which names exist. A hash made with older parameters is replaced.
        """
        user = self.get_user(name)
        if user is None or user.password_hash is None:
            passwords.waste_verification(password)
            return None
        if not passwords.verify_password(user.password_hash, password):
            return None
        if user.disabled is not None:
            return None
        if passwords.needs_rehash(user.password_hash):
            self._store.users.set_password_hash(user.name, passwords.hash_password(password))
        self._store.users.note_login(user.name, self._clock())
        return Principal(user.name, permissions_of(user), "password")

    def login(
        self, name: str, password: str, address: str | None = None, ttl: float = SESSION_TTL
    ) -> NewSession | None:
        """Check the password and open a browser session; None if the password is wrong."""
        principal = self.authenticate_password(name, password)
        if principal is None:
            return None
        return self.start_session(principal.name, address, ttl)

    def start_session(
        self, name: str, address: str | None = None, ttl: float = SESSION_TTL
    ) -> NewSession:
        """A new session for the user; only the hash of its id is stored."""
        user = self.require_user(name)
        now = self._clock()
        session_id, csrf = tokens.new_session_id(), tokens.new_csrf_token()
        record = SessionRecord(
            username=user.name, created=now, expires=now + ttl, csrf_token=csrf, address=address
        )
        self._store.sessions.create(tokens.hash_secret(session_id), record)
        return NewSession(session_id, csrf, record)

    def authenticate_session(self, session_id: str) -> Principal | None:
        """The principal of a live session (carrying its CSRF token), else None."""
        if not session_id:
            return None
        session_hash = tokens.hash_secret(session_id)
        session = self._store.sessions.get(session_hash)
        if session is None:
            return None
        if self._clock() >= session.expires:
            self._store.sessions.delete(session_hash)
            return None
        user = self._store.users.get(session.username)
        if user is None or user.disabled is not None:
            return None
        return Principal(user.name, permissions_of(user), "session", csrf_token=session.csrf_token)

    def end_session(self, session_id: str) -> bool:
        """Log out: delete the session; False if it did not exist."""
        return self._store.sessions.delete(tokens.hash_secret(session_id))

    def create_token(
        self, name: str, token_name: str, ttl: float = DEFAULT_TOKEN_TTL
    ) -> IssuedToken:
        """A new API token for the user, valid for ``ttl`` seconds; its text is returned once."""
        user = self.require_user(name)
        if user.disabled is not None:
            raise AccountError(f"{user.name} is disabled")
        label = token_name.strip()
        if not label or len(label) > _TOKEN_NAME_MAX:
            raise AccountError(f"a token name needs 1-{_TOKEN_NAME_MAX} characters")
        if ttl <= 0:
            raise AccountError("a token's lifetime must be positive")
        token_id, secret, text = tokens.new_token()
        now = self._clock()
        record = TokenRecord(
            token_id=token_id, username=user.name, name=label, created=now, expires=now + ttl
        )
        self._store.tokens.create(record, tokens.hash_secret(secret))
        return IssuedToken(text, record)

    def list_tokens(self, name: str) -> list[TokenRecord]:
        """The user's tokens (never their secrets), revoked and expired ones included."""
        return self._store.tokens.list(self.require_user(name).name)

    def get_token(self, token_id: str) -> TokenRecord | None:
        """One token's record, or None."""
        return self._store.tokens.get(token_id)

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token; False if it was already. NotFound for an unknown id."""
        if not tokens.is_token_id(token_id):
            raise NotFound(f"no token {token_id}")
        return self._store.tokens.revoke(token_id, self._clock())

    def authenticate_token(self, token: str) -> Principal | None:
        """The principal of a valid API token (not revoked, not expired, owner enabled)."""
        parsed = tokens.parse_token(token)
        if parsed is None:
            return None
        token_id, secret = parsed
        found = self._store.tokens.lookup(token_id)
        if not tokens.secret_matches(None if found is None else found[1], secret):
            return None
        assert found is not None
        record = found[0]
        now = self._clock()
        if not record.usable(now):
            return None
        user = self._store.users.get(record.username)
        if user is None or user.disabled is not None:
            return None
        if record.last_used is None or record.last_used <= now - TOKEN_TOUCH_SECONDS:
            # Only then a write: a request must not wait for the writer (a group commit's
            # sync) to learn that a token used a second ago is in use.
            self._store.tokens.touch(token_id, now, TOKEN_TOUCH_SECONDS)
        credential = f"token {token_id} ({record.name})"
        return Principal(user.name, permissions_of(user), credential, token_id=token_id)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _check_password(password: str, username: str) -> None:
        try:
            passwords.check_password_strength(password, username)
        except passwords.WeakPassword as exc:
            raise AccountError(str(exc)) from None

    @staticmethod
    def _parse(item: str) -> tuple[str, str]:
        try:
            return parse_grant(item)
        except ValueError as exc:
            raise AccountError(str(exc)) from None

    def _keep_an_administrator(
        self, user: UserRecord, *, new_roles: list[str] | None = None, disabled: bool = False
    ) -> None:
        """Refuse a change that would leave no enabled user able to manage users."""
        if user.disabled is not None or SERVER_ADMIN not in permissions_of(user):
            return
        after = effective_permissions(
            user.roles if new_roles is None else new_roles, user.permissions
        )
        if not disabled and SERVER_ADMIN in after:
            return
        others = [
            other
            for other in self.list_users()
            if other.name != user.name
            and other.disabled is None
            and SERVER_ADMIN in permissions_of(other)
        ]
        if not others:
            raise AccountError(
                f"{user.name} is the last enabled user with SERVER_ADMIN; make another "
                "administrator first"
            )
