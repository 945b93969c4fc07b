"""Users, tokens and sessions on both backends: the stores, and Accounts with real argon2."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from peregrine.auth import (
    ADMINISTRATOR,
    ANALYST,
    EXECVE,
    FILESYSTEM_READ,
    READ_RESULTS,
    SERVER_ADMIN,
    START_HUNT,
    AccountError,
    Accounts,
    PermissionDenied,
    Principal,
)
from peregrine.auth.passwords import hash_password
from peregrine.datastore import (
    Conflict,
    Datastore,
    NotFound,
    SessionRecord,
    TokenRecord,
    UserRecord,
    open_datastore,
)
from peregrine.datastore.schema import sessions, tokens, users

PASSWORD = "correct horse battery"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(datastore: Datastore, clock: Clock) -> Accounts:
    return Accounts(datastore, clock=clock)


def _raw_rows(datastore: Datastore, table: object) -> list[tuple[object, ...]]:
    with datastore._db.read() as conn:
        return [tuple(row) for row in conn.execute(select(table))]  # type: ignore[call-overload]


# -- the stores -------------------------------------------------------------------------------


def test_user_store_create_get_list_and_conflict(datastore: Datastore) -> None:
    record = UserRecord("bob", ["reader"], [], 5.0, password_hash="h")
    datastore.users.create(record)
    datastore.users.create(UserRecord("alice", [], ["EXECVE"], 6.0))
    assert datastore.users.get("bob") == record
    assert [user.name for user in datastore.users.list()] == ["alice", "bob"]
    assert datastore.users.get("carol") is None
    with pytest.raises(Conflict):
        datastore.users.create(record)
    assert "h" not in repr(record)


def test_change_grants_is_atomic_across_threads(datastore: Datastore) -> None:
    datastore.users.create(UserRecord("bob", [], [], 1.0))
    names = ["READ_RESULTS", "LABEL_CLIENT", "COLLECT_CLIENT", "START_HUNT", "EXECVE"]
    threads = [
        threading.Thread(
            target=datastore.users.change_grants, args=("bob",), kwargs={"add_permissions": [name]}
        )
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    user = datastore.users.get("bob")
    assert user is not None and user.permissions == sorted(names)
    with pytest.raises(NotFound):
        datastore.users.change_grants("nobody", add_roles=["reader"])


def test_deleting_a_user_removes_tokens_and_sessions(datastore: Datastore) -> None:
    datastore.users.create(UserRecord("bob", [], [], 1.0))
    datastore.tokens.create(TokenRecord("00000000000000aa", "bob", "ci", 1.0, 100.0), "f" * 64)
    datastore.sessions.create("e" * 64, SessionRecord("bob", 1.0, 100.0, "csrf"))
    assert datastore.users.delete("bob")
    assert datastore.tokens.get("00000000000000aa") is None
    assert datastore.sessions.get("e" * 64) is None
    assert not datastore.users.delete("bob")


def test_token_and_session_need_an_existing_user(datastore: Datastore) -> None:
    with pytest.raises(NotFound):
        datastore.tokens.create(TokenRecord("00000000000000aa", "ghost", "x", 1.0, 2.0), "0" * 64)
    with pytest.raises(NotFound):
        datastore.sessions.create("0" * 64, SessionRecord("ghost", 1.0, 2.0, "c"))


def test_upgrading_from_0002_adds_the_tables_and_keeps_data(datastore_url: str) -> None:
    from alembic import command

    from peregrine.datastore.database import Database
    from peregrine.datastore.migrate import alembic_config, head_revision

    db = Database(datastore_url)
    try:
        with db.write() as conn:
            command.upgrade(alembic_config(conn), "0002")
            conn.exec_driver_sql(
                "INSERT INTO clients (client_id, public_key, first_seen, last_seen, "
                "ip_addresses, mac_addresses, users, labels) "
                "VALUES ('C.0000000000000001', 'k', 1, 1, '[]', '[]', '[]', '[]')"
            )
    finally:
        db.close()
    with open_datastore(datastore_url) as store:
        assert store.revision() == head_revision()
        assert store.clients.count() == 1
        store.users.create(UserRecord("bob", [], [], 1.0))
        assert store.audit.add(2.0, "bob", "user.create").audit_id >= 1
    db = Database(datastore_url)
    try:
        with db.write() as conn:
            command.downgrade(alembic_config(conn), "0002")
    finally:
        db.close()
    with open_datastore(datastore_url) as store:
        assert store.users.list() == [] and store.clients.count() == 1


# -- users and passwords (real argon2) --------------------------------------------------------


def test_password_verifies_and_wrong_or_unknown_fail(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("Alice", PASSWORD, [ANALYST])
    principal = accounts.authenticate_password("alice", PASSWORD)
    assert principal is not None
    assert principal.name == "alice" and principal.credential == "password"
    assert principal.permissions == {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "FILESYSTEM_READ",
        "ANALYZE",
    }
    assert accounts.require_user("alice").last_login == clock.now
    assert accounts.authenticate_password("alice", PASSWORD + "x") is None
    assert accounts.authenticate_password("mallory", PASSWORD) is None
    assert accounts.authenticate_password("not a valid name!", PASSWORD) is None


def test_password_hash_is_argon2_and_password_not_stored(
    accounts: Accounts, datastore: Datastore
) -> None:
    accounts.create_user("alice", PASSWORD)
    stored = accounts.require_user("alice").password_hash
    assert stored is not None and stored.startswith("$argon2id$")
    assert PASSWORD not in repr(_raw_rows(datastore, users))


def test_weak_passwords_and_bad_names_are_refused(accounts: Accounts) -> None:
    for weak in ("short", "aaaaaaaaaaaaaaaa", "alice-is-the-best-1"):
        with pytest.raises(AccountError):
            accounts.create_user("alice", weak)
    with pytest.raises(AccountError, match="invalid user name"):
        accounts.create_user("local:root", PASSWORD)
    with pytest.raises(AccountError, match="unknown role"):
        accounts.create_user("alice", PASSWORD, ["wizard"])
    assert accounts.list_users() == []


def test_outdated_hash_is_replaced_at_login(accounts: Accounts, datastore: Datastore) -> None:
    from argon2 import PasswordHasher

    accounts.create_user("alice", PASSWORD)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    datastore.users.set_password_hash("alice", old)
    assert accounts.authenticate_password("alice", PASSWORD) is not None
    new = accounts.require_user("alice").password_hash
    assert new != old and new is not None and "m=65536" in new


def test_tokens_only_user_cannot_log_in_by_password(accounts: Accounts) -> None:
    accounts.create_user("robot", None, ["api"])
    assert accounts.authenticate_password("robot", PASSWORD) is None


def test_disabled_user_is_refused_everywhere_until_enabled(accounts: Accounts) -> None:
    accounts.create_user("root-admin", PASSWORD, [ADMINISTRATOR])
    accounts.create_user("alice", PASSWORD, [ANALYST])
    issued = accounts.create_token("alice", "ci")
    session = accounts.start_session("alice")
    accounts.disable("alice")
    assert accounts.authenticate_password("alice", PASSWORD) is None
    assert accounts.authenticate_token(issued.token) is None
    assert accounts.authenticate_session(session.session_id) is None
    with pytest.raises(AccountError, match="disabled"):
        accounts.create_token("alice", "ci2")
    accounts.enable("alice")
    assert accounts.authenticate_token(issued.token) is not None
    assert accounts.authenticate_password("alice", PASSWORD) is not None
    # Disabling ended the session for good.
    assert accounts.authenticate_session(session.session_id) is None


# -- roles and grants -------------------------------------------------------------------------


def test_grant_and_revoke_roles_and_permissions(accounts: Accounts) -> None:
    accounts.create_user("alice", PASSWORD, ["reader"])
    user = accounts.grant("alice", "analyst")
    assert user.roles == ["analyst", "reader"]
    user = accounts.grant("alice", "execve")
    assert user.permissions == [EXECVE]
    principal = accounts.authenticate_password("alice", PASSWORD)
    assert principal is not None and EXECVE in principal.permissions
    assert principal.query_permissions == {EXECVE, FILESYSTEM_READ}
    user = accounts.revoke("alice", "EXECVE")
    assert user.permissions == []
    with pytest.raises(AccountError, match="through the role analyst"):
        accounts.revoke("alice", FILESYSTEM_READ)
    user = accounts.revoke("alice", "analyst")
    assert user.roles == ["reader"]
    principal = accounts.authenticate_password("alice", PASSWORD)
    assert principal is not None and principal.permissions == {READ_RESULTS}
    with pytest.raises(AccountError, match="neither a role"):
        accounts.grant("alice", "god")
    with pytest.raises(NotFound):
        accounts.grant("nobody", "reader")


def test_principal_require(accounts: Accounts) -> None:
    accounts.create_user("alice", PASSWORD, ["reader"])
    principal = accounts.authenticate_password("alice", PASSWORD)
    assert principal is not None
    principal.require(READ_RESULTS)
    with pytest.raises(PermissionDenied) as caught:
        principal.require(READ_RESULTS, START_HUNT)
    assert caught.value.permission == START_HUNT
    assert Principal.local().name.startswith("local:")
    assert Principal.local().has(SERVER_ADMIN)


def test_last_administrator_cannot_be_removed(accounts: Accounts) -> None:
    accounts.create_user("root-admin", PASSWORD, [ADMINISTRATOR])
    for change in (
        lambda: accounts.revoke("root-admin", ADMINISTRATOR),
        lambda: accounts.disable("root-admin"),
        lambda: accounts.delete_user("root-admin"),
        lambda: accounts.set_roles("root-admin", ["reader"]),
    ):
        with pytest.raises(AccountError, match="last enabled user with SERVER_ADMIN"):
            change()
    accounts.create_user("second", PASSWORD, ["reader"])
    accounts.grant("second", SERVER_ADMIN)
    assert accounts.revoke("root-admin", ADMINISTRATOR).roles == []


# -- API tokens -------------------------------------------------------------------------------


def test_token_verifies_and_plaintext_is_never_stored(
    accounts: Accounts, datastore: Datastore, clock: Clock
) -> None:
    accounts.create_user("robot", None, ["api"])
    issued = accounts.create_token("robot", "nightly export", ttl=3600)
    assert issued.token.startswith("prg_" + issued.record.token_id + "_")
    secret = issued.token.split("_", 2)[2]
    rows = repr(_raw_rows(datastore, tokens))
    assert secret not in rows and issued.token not in rows
    assert issued.token not in repr(issued)
    principal = accounts.authenticate_token(issued.token)
    assert principal is not None
    assert principal.name == "robot"
    assert principal.token_id == issued.record.token_id
    assert principal.credential == f"token {issued.record.token_id} (nightly export)"
    assert principal.csrf_ok(None)
    listed = accounts.list_tokens("robot")
    assert [token.token_id for token in listed] == [issued.record.token_id]
    assert listed[0].last_used == clock.now


def test_wrong_secret_malformed_expired_and_revoked_tokens_fail(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.create_user("robot", None, ["api"])
    issued = accounts.create_token("robot", "ci", ttl=3600)
    token_id = issued.record.token_id
    wrong = f"prg_{token_id}_" + "A" * 43
    assert accounts.authenticate_token(wrong) is None
    assert accounts.authenticate_token(f"prg_{'0' * 16}_" + "A" * 43) is None
    assert accounts.authenticate_token("Bearer something") is None
    assert accounts.authenticate_token("") is None
    clock.now += 3600
    assert accounts.authenticate_token(issued.token) is None  # expired
    clock.now -= 1
    assert accounts.authenticate_token(issued.token) is not None
    assert accounts.revoke_token(token_id)
    assert not accounts.revoke_token(token_id)
    assert accounts.authenticate_token(issued.token) is None
    revoked = accounts.get_token(token_id)
    assert revoked is not None and revoked.revoked == clock.now
    with pytest.raises(NotFound):
        accounts.revoke_token("ffffffffffffffff")
    with pytest.raises(NotFound):
        accounts.revoke_token("not-an-id")


def test_last_used_is_updated_at_most_once_a_minute(accounts: Accounts, clock: Clock) -> None:
    accounts.create_user("robot", None, ["api"])
    issued = accounts.create_token("robot", "ci")
    assert accounts.get_token(issued.record.token_id).last_used is None  # type: ignore[union-attr]
    accounts.authenticate_token(issued.token)
    first = clock.now
    clock.now += 30
    accounts.authenticate_token(issued.token)
    assert accounts.get_token(issued.record.token_id).last_used == first  # type: ignore[union-attr]
    clock.now += 31
    accounts.authenticate_token(issued.token)
    assert accounts.get_token(issued.record.token_id).last_used == clock.now  # type: ignore[union-attr]


def test_token_lifetime_and_name_are_checked(accounts: Accounts) -> None:
    accounts.create_user("robot", None, ["api"])
    with pytest.raises(AccountError):
        accounts.create_token("robot", "ci", ttl=0)
    with pytest.raises(AccountError):
        accounts.create_token("robot", "  ")
    with pytest.raises(NotFound):
        accounts.create_token("ghost", "ci")


# -- browser sessions -------------------------------------------------------------------------


def test_session_login_csrf_expiry_and_logout(
    accounts: Accounts, datastore: Datastore, clock: Clock
) -> None:
    accounts.create_user("alice", PASSWORD, [ANALYST])
    assert accounts.login("alice", "wrong password!!") is None
    session = accounts.login("alice", PASSWORD, address="10.0.0.5", ttl=600)
    assert session is not None
    assert session.record.address == "10.0.0.5"
    assert session.record.expires == clock.now + 600
    assert session.session_id not in repr(_raw_rows(datastore, sessions))
    principal = accounts.authenticate_session(session.session_id)
    assert principal is not None and principal.credential == "session"
    assert principal.csrf_ok(session.csrf_token)
    assert not principal.csrf_ok(None)
    assert not principal.csrf_ok(session.csrf_token[:-1] + "x")
    assert accounts.authenticate_session(session.session_id + "x") is None
    assert accounts.authenticate_session("") is None
    other = accounts.start_session("alice")
    assert other.csrf_token != session.csrf_token
    assert accounts.end_session(session.session_id)
    assert accounts.authenticate_session(session.session_id) is None
    assert not accounts.end_session(session.session_id)
    clock.now += 12 * 3600
    assert accounts.authenticate_session(other.session_id) is None  # expired, and deleted
    assert datastore.sessions.purge(clock.now) == 0


def test_password_change_ends_sessions(accounts: Accounts) -> None:
    accounts.create_user("alice", PASSWORD)
    session = accounts.start_session("alice")
    accounts.set_password("alice", "another good passphrase")
    assert accounts.authenticate_session(session.session_id) is None
    assert accounts.authenticate_password("alice", PASSWORD) is None
    assert accounts.authenticate_password("alice", "another good passphrase") is not None


def test_purge_removes_only_expired_sessions(datastore: Datastore) -> None:
    datastore.users.create(UserRecord("bob", [], [], 1.0, password_hash=hash_password(PASSWORD)))
    datastore.sessions.create("a" * 64, SessionRecord("bob", 1.0, 10.0, "c1"))
    datastore.sessions.create("b" * 64, SessionRecord("bob", 1.0, 20.0, "c2"))
    assert datastore.sessions.purge(15.0) == 1
    assert datastore.sessions.get("a" * 64) is None
    assert datastore.sessions.get("b" * 64) is not None


def test_a_token_used_within_the_minute_is_authenticated_without_waiting_for_a_writer(
    accounts: Accounts, datastore: Datastore, clock: Clock
) -> None:
    """No write while ``last_used`` is fresh, so a request's authentication never waits for
    another writer (the group commit syncing a batch)."""
    accounts.create_user("robot", None, ["api"])
    issued = accounts.create_token("robot", "ci")
    assert accounts.authenticate_token(issued.token) is not None  # first use: written
    clock.now += 30
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with datastore._db.write():
            holding.set()
            release.wait(30)

    busy = threading.Thread(target=writer)
    busy.start()
    assert holding.wait(10)
    found: list[Principal | None] = []
    auth = threading.Thread(target=lambda: found.append(accounts.authenticate_token(issued.token)))
    try:
        auth.start()
        auth.join(10)
        assert [p.name if p else None for p in found] == ["robot"]
    finally:
        release.set()
        busy.join()
        auth.join()
