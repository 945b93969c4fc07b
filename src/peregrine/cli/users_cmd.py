"""``peregrine users``: manage users, roles and API tokens directly in the server's datastore.

It runs on the server host (it opens the datastore itself, so it also works before any
administrator exists), and it audits every change as ``local:<operating system user>``, into the
datastore and the audit file the server writes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from peregrine.auth import (
    ROLES,
    AccountError,
    Accounts,
    AuditLog,
    Principal,
    default_audit_path,
    permissions_of,
)
from peregrine.auth.roles import PERMISSIONS
from peregrine.config import SERVER_FILE, ConfigError, default_data_dir, load_server_config
from peregrine.datastore import (
    Conflict,
    DatastoreError,
    NotFound,
    TokenRecord,
    UserRecord,
    open_datastore,
)

app = typer.Typer(
    help="Manage users, their roles and permissions, and their API tokens (on the server host).",
    no_args_is_help=True,
)
console = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The server's server.yaml (default: the one in the default data directory).",
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--datastore-url",
        envvar="PEREGRINE_DATASTORE_URL",
        help="Open this datastore instead of the configured one.",
    ),
]
AuditFileOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-file",
        help="Also write the audit entry to this JSON-lines file "
        "(default with a configuration: <data_dir>/audit.jsonl).",
    ),
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]

_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ROLE_HELP = ", ".join(ROLES)
_PERMISSION_HELP = ", ".join(PERMISSIONS)


def _fail(message: str) -> typer.Exit:
    err.print("[bold red]Error:[/bold red] ", end="")
    err.print(message, markup=False)
    return typer.Exit(1)


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w`` or ``45s``."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m or 2w")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _locate(
    config: Path | None, url: str | None, audit_file: Path | None
) -> tuple[str, Path | None]:
    """The datastore URL and the audit file to use, from the options given."""
    if url:
        return url, audit_file
    if config is None:
        candidate = default_data_dir() / SERVER_FILE
        if not candidate.exists():
            raise _fail(
                f"no server configuration at {candidate}: pass --config server.yaml "
                "or --datastore-url"
            )
        config = candidate
    try:
        cfg = load_server_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    return cfg.datastore_url, audit_file or default_audit_path(cfg.data_dir)


@contextlib.contextmanager
def _session(
    config: Path | None, url: str | None, audit_file: Path | None = None
) -> Iterator[tuple[Accounts, AuditLog]]:
    datastore_url, audit_path = _locate(config, url, audit_file)
    try:
        store = open_datastore(datastore_url)
    except DatastoreError as exc:
        raise _fail(f"cannot open the datastore: {exc}") from None
    audit = AuditLog(store.audit, audit_path)
    try:
        yield Accounts(store), audit
    finally:
        audit.close()
        store.close()


def _audited(
    audit: AuditLog,
    action: str,
    target: str,
    parameters: dict[str, Any],
    change: Callable[[], T],
) -> T:
    """Run ``change`` and audit it as the local operator: ok, or refused with the reason."""
    actor = Principal.local()
    try:
        outcome = change()
    except (AccountError, NotFound, Conflict) as exc:
        audit.record(
            actor, action, target=target, parameters=parameters, result="refused", reason=str(exc)
        )
        raise _fail(str(exc)) from None
    audit.record(actor, action, target=target, parameters=parameters)
    return outcome


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _fail("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _when(stamp: float | None) -> str:
    if stamp is None:
        return ""
    return datetime.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "name": user.name,
        "roles": user.roles,
        "granted_permissions": user.permissions,
        "permissions": sorted(permissions_of(user)),
        "has_password": user.password_hash is not None,
        "disabled": user.disabled,
        "created": user.created,
        "last_login": user.last_login,
    }


def _token_json(token: TokenRecord) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "user": token.username,
        "name": token.name,
        "created": token.created,
        "expires": token.expires,
        "last_used": token.last_used,
        "revoked": token.revoked,
    }


def _describe(user: UserRecord) -> str:
    roles = ", ".join(user.roles) or "no roles"
    extra = f" + {', '.join(user.permissions)}" if user.permissions else ""
    return f"{user.name}: {roles}{extra}"


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The new user's name (stored in lower case).")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", "-r", help=f"A role (repeatable; default reader): {_ROLE_HELP}."),
    ] = None,
    password_stdin: PasswordStdinOption = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No password: the user only uses API tokens.")
    ] = False,
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Add a user. Prompts for the password twice unless --password-stdin or --no-password."""
    roles = [item.strip().lower() for item in role] if role else ["reader"]
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        password = None if no_password else _read_password(password_stdin)
        user = _audited(
            audit,
            "user.create",
            name,
            {"roles": roles, "password": password is not None},
            lambda: accounts.create_user(name, password, roles),
        )
    console.print(f"added {_describe(user)}")


@app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
) -> None:
    """List users with their roles and permissions."""
    with _session(config, datastore_url) as (accounts, _audit):
        users = accounts.list_users()
    if as_json:
        typer.echo(json.dumps([_user_json(user) for user in users], indent=2))
        return
    table = Table("name", "roles", "granted", "permissions", "status", "last login")
    for user in users:
        status = "disabled" if user.disabled is not None else "enabled"
        if user.password_hash is None:
            status += " (tokens only)"
        table.add_row(
            user.name,
            ", ".join(user.roles),
            ", ".join(user.permissions),
            ", ".join(sorted(permissions_of(user))),
            status,
            _when(user.last_login),
        )
    console.print(table)


@app.command("grant")
def grant(
    name: Annotated[str, typer.Argument(help="The user.")],
    role_or_permission: Annotated[
        str,
        typer.Argument(help=f"A role ({_ROLE_HELP}) or a permission ({_PERMISSION_HELP})."),
    ],
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Give a user a role, or a single permission beside their roles."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        user = _audited(
            audit,
            "user.grant",
            name,
            {"grant": role_or_permission},
            lambda: accounts.grant(name, role_or_permission),
        )
    console.print(f"now {_describe(user)}")


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The user.")],
    role_or_permission: Annotated[
        str, typer.Argument(help="A role, or a permission granted individually.")
    ],
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Take a role, or an individually granted permission, away from a user."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        user = _audited(
            audit,
            "user.revoke",
            name,
            {"revoke": role_or_permission},
            lambda: accounts.revoke(name, role_or_permission),
        )
    console.print(f"now {_describe(user)}")


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user.")],
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Set a user's password (ends their browser sessions)."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        password = _read_password(password_stdin)
        _audited(audit, "user.password", name, {}, lambda: accounts.set_password(name, password))
    console.print(f"password of {name} changed")


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="The user.")],
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Disable a user: no logins, sessions ended, tokens refused (until enabled again)."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        _audited(audit, "user.disable", name, {}, lambda: accounts.disable(name))
    console.print(f"{name} disabled")


@app.command("enable")
def enable(
    name: Annotated[str, typer.Argument(help="The user.")],
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Enable a disabled user again."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        _audited(audit, "user.enable", name, {}, lambda: accounts.enable(name))
    console.print(f"{name} enabled")


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    token_name: Annotated[
        str | None, typer.Option("--name", "-n", help="What the token is for (shown in lists).")
    ] = None,
    expires: Annotated[
        str, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m, 2w...")
    ] = "30d",
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Create an API token for a user and print it, once: it cannot be shown again."""
    try:
        ttl = parse_duration(expires)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    label = token_name or f"cli-{datetime.date.today().isoformat()}"
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        actor = Principal.local()
        parameters: dict[str, Any] = {"token_name": label, "expires_in": ttl}
        try:
            issued = accounts.create_token(name, label, ttl)
        except (AccountError, NotFound) as exc:
            audit.record(
                actor,
                "token.create",
                target=name,
                parameters=parameters,
                result="refused",
                reason=str(exc),
            )
            raise _fail(str(exc)) from None
        parameters["token_id"] = issued.record.token_id
        audit.record(actor, "token.create", target=issued.record.username, parameters=parameters)
    err.print(
        f"[yellow]Token {issued.record.token_id} for {issued.record.username} "
        f"(expires {_when(issued.record.expires)}). Copy it now: it is not stored and "
        "cannot be shown again.[/yellow]"
    )
    typer.echo(issued.token)


@app.command("tokens")
def list_tokens(
    name: Annotated[str, typer.Argument(help="The user.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
) -> None:
    """List a user's API tokens (never their secrets)."""
    with _session(config, datastore_url) as (accounts, _audit):
        try:
            found = accounts.list_tokens(name)
        except NotFound as exc:
            raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([_token_json(item) for item in found], indent=2))
        return
    now = datetime.datetime.now().timestamp()
    table = Table("token id", "name", "created", "expires", "last used", "state")
    for item in found:
        state = "revoked" if item.revoked else ("expired" if now >= item.expires else "active")
        table.add_row(
            item.token_id,
            item.name,
            _when(item.created),
            _when(item.expires),
            _when(item.last_used),
            state,
        )
    console.print(table)


@app.command("revoke-token")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `peregrine users tokens`).")],
    config: ConfigOption = None,
    datastore_url: UrlOption = None,
    audit_file: AuditFileOption = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    with _session(config, datastore_url, audit_file) as (accounts, audit):
        changed = _audited(
            audit, "token.revoke", token_id, {}, lambda: accounts.revoke_token(token_id)
        )
    console.print(f"token {token_id} {'revoked' if changed else 'was already revoked'}")
