"""Users, their API tokens and their browser sessions: rows only.

This module stores what ``peregrine.auth`` decides: hashes it made, roles it checked. It never
sees a password, a token secret or a session id, only their hashes, so nothing here can leak one.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Row, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .errors import Conflict, NotFound
from .records import SessionRecord, TokenRecord, UserRecord
from .schema import sessions, tokens, users

_USER_COLUMNS = [users.c[name] for name in UserRecord.__dataclass_fields__]
_TOKEN_COLUMNS = [tokens.c[name] for name in TokenRecord.__dataclass_fields__]
_SESSION_COLUMNS = [sessions.c[name] for name in SessionRecord.__dataclass_fields__]


class UserStore:
    """Every user, keyed by name."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: UserRecord) -> None:
        """Store a new user; Conflict if the name is taken."""
        values = {column.name: getattr(record, column.name) for column in _USER_COLUMNS}
        try:
            with self._db.write() as conn:
                conn.execute(users.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict(f"user {record.name} already exists") from exc

    def get(self, name: str) -> UserRecord | None:
        """The user's record, or None."""
        with self._db.read() as conn:
            row = conn.execute(select(*_USER_COLUMNS).where(users.c.name == name)).first()
        return None if row is None else UserRecord(**row._asdict())

    def list(self, limit: int = 1000, offset: int = 0) -> builtins.list[UserRecord]:
        """A page of users by name."""
        query = select(*_USER_COLUMNS).order_by(users.c.name).limit(limit).offset(offset)
        with self._db.read() as conn:
            return [UserRecord(**row._asdict()) for row in conn.execute(query)]

    def set_password_hash(self, name: str, password_hash: str | None) -> None:
        """Replace the stored password hash (None: the user can no longer log in by password)."""
        self._update(name, password_hash=password_hash)

    def note_login(self, name: str, now: float) -> None:
        """Record a successful login."""
        self._update(name, last_login=now)

    def set_disabled(self, name: str, disabled: float | None) -> None:
        """Disable the user at ``disabled`` (ending their sessions), or enable them with None.

        Their tokens stay, revoked in effect: authentication refuses a disabled user's tokens.
        """
        with self._db.write() as conn:
            statement = update(users).where(users.c.name == name).values(disabled=disabled)
            if conn.execute(statement).rowcount != 1:
                raise NotFound(f"no user {name}")
            if disabled is not None:
                conn.execute(delete(sessions).where(sessions.c.username == name))

    def change_grants(
        self,
        name: str,
        *,
        add_roles: Iterable[str] = (),
        remove_roles: Iterable[str] = (),
        add_permissions: Iterable[str] = (),
        remove_permissions: Iterable[str] = (),
    ) -> UserRecord:
        """Add and remove roles and individual permissions atomically; the updated record."""
        plus_roles, minus_roles = set(add_roles), set(remove_roles)
        plus_perms, minus_perms = set(add_permissions), set(remove_permissions)
        return self._change(
            name,
            lambda roles, perms: (
                (roles | plus_roles) - minus_roles,
                (perms | plus_perms) - minus_perms,
            ),
        )

    def set_roles(self, name: str, roles: Iterable[str]) -> UserRecord:
        """Replace the user's roles (individual permissions stay); the updated record."""
        wanted = set(roles)
        return self._change(name, lambda _roles, perms: (wanted, perms))

    def _change(
        self, name: str, change: Callable[[set[str], set[str]], tuple[set[str], set[str]]]
    ) -> UserRecord:
        with self._db.write() as conn:
            # FOR UPDATE holds the row on PostgreSQL (SQLite: the write lock), so two admins
            # granting at once cannot lose each other's change.
            row = conn.execute(
                select(*_USER_COLUMNS).where(users.c.name == name).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no user {name}")
            current = UserRecord(**row._asdict())
            roles, perms = change(set(current.roles), set(current.permissions))
            values = {"roles": sorted(roles), "permissions": sorted(perms)}
            conn.execute(update(users).where(users.c.name == name).values(**values))
        return UserRecord(**{**row._asdict(), **values})

    def delete(self, name: str) -> bool:
        """Remove the user with their tokens and sessions; False if there was none."""
        with self._db.write() as conn:
            return conn.execute(delete(users).where(users.c.name == name)).rowcount == 1

    def _update(self, name: str, **values: Any) -> None:
        with self._db.write() as conn:
            result = conn.execute(update(users).where(users.c.name == name).values(**values))
        if result.rowcount != 1:
            raise NotFound(f"no user {name}")


class TokenStore:
    """API tokens: who owns each, until when, and the hash of its secret."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: TokenRecord, secret_hash: str) -> None:
        """Store a new token; NotFound for an unknown user, Conflict for a used token id."""
        values = {column.name: getattr(record, column.name) for column in _TOKEN_COLUMNS}
        try:
            with self._db.write() as conn:
                _require_user(conn, record.username)
                conn.execute(tokens.insert().values(secret_hash=secret_hash, **values))
        except IntegrityError as exc:
            raise Conflict(f"token {record.token_id} already exists") from exc

    def get(self, token_id: str) -> TokenRecord | None:
        """The token's record (never its secret), or None."""
        found = self.lookup(token_id)
        return None if found is None else found[0]

    def lookup(self, token_id: str) -> tuple[TokenRecord, str] | None:
        """The token's record and stored secret hash, for verification; None if unknown."""
        query = select(*_TOKEN_COLUMNS, tokens.c.secret_hash).where(tokens.c.token_id == token_id)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        data = row._asdict()
        secret_hash = data.pop("secret_hash")
        return TokenRecord(**data), secret_hash

    def list(self, username: str) -> builtins.list[TokenRecord]:
        """The user's tokens, oldest first, revoked and expired ones included."""
        query = (
            select(*_TOKEN_COLUMNS)
            .where(tokens.c.username == username)
            .order_by(tokens.c.created, tokens.c.token_id)
        )
        with self._db.read() as conn:
            return [_token(row) for row in conn.execute(query)]

    def touch(self, token_id: str, now: float, resolution: float = 60.0) -> bool:
        """Set ``last_used`` to ``now`` unless it is already within ``resolution`` seconds of
        it (a busy script would otherwise cost a write per request); True if it was written."""
        statement = (
            update(tokens)
            .where(
                tokens.c.token_id == token_id,
                or_(tokens.c.last_used.is_(None), tokens.c.last_used <= now - resolution),
            )
            .values(last_used=now)
        )
        with self._db.write() as conn:
            return conn.execute(statement).rowcount == 1

    def revoke(self, token_id: str, now: float) -> bool:
        """Revoke the token; False if it was revoked already. NotFound for an unknown id."""
        statement = (
            update(tokens)
            .where(tokens.c.token_id == token_id, tokens.c.revoked.is_(None))
            .values(revoked=now)
        )
        with self._db.write() as conn:
            if conn.execute(statement).rowcount == 1:
                return True
            known = select(tokens.c.token_id).where(tokens.c.token_id == token_id)
            if conn.execute(known).first() is None:
                raise NotFound(f"no token {token_id}")
        return False


class SessionStore:
    """Browser sessions, keyed by the hash of their id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, session_hash: str, record: SessionRecord) -> None:
        """Store a new session; NotFound for an unknown user."""
        values = {column.name: getattr(record, column.name) for column in _SESSION_COLUMNS}
        with self._db.write() as conn:
            _require_user(conn, record.username)
            conn.execute(sessions.insert().values(session_hash=session_hash, **values))

    def get(self, session_hash: str) -> SessionRecord | None:
        """The session, or None (expired ones too: the caller compares ``expires``)."""
        query = select(*_SESSION_COLUMNS).where(sessions.c.session_hash == session_hash)
        with self._db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else SessionRecord(**row._asdict())

    def delete(self, session_hash: str) -> bool:
        """End one session (logout); False if there was none."""
        with self._db.write() as conn:
            statement = delete(sessions).where(sessions.c.session_hash == session_hash)
            return conn.execute(statement).rowcount == 1

    def delete_for_user(self, username: str) -> int:
        """End every session of a user (password change, disabling); how many there were."""
        with self._db.write() as conn:
            return conn.execute(delete(sessions).where(sessions.c.username == username)).rowcount

    def purge(self, now: float) -> int:
        """Delete sessions expired by ``now``; how many."""
        with self._db.write() as conn:
            return conn.execute(delete(sessions).where(sessions.c.expires <= now)).rowcount


def _require_user(conn: Connection, name: str) -> None:
    if conn.execute(select(users.c.name).where(users.c.name == name)).first() is None:
        raise NotFound(f"no user {name}")


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(**row._asdict())
