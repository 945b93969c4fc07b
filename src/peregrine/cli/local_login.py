"""The local deployment's login: how the CLI on the server's own machine reaches the API with no
settings.

``peregrine server`` makes sure the data directory holds ``cli-login.json`` (created 0600, the
directory 0700): the API's URL on loopback, the deployment's CA certificate, and an API token of
a generated ``admin`` user (administrator, no password). The remote commands read it when no
``--url``/``PEREGRINE_URL`` is given (or the URL given is the same one). Whoever can read the file
can already read the CA key and the datastore beside it, so it exposes nothing new; another user
of the machine cannot read it and is told to pass a token instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peregrine.auth import Accounts
    from peregrine.config import ServerConfig

LOGIN_FILE = "cli-login.json"
ADMIN_USER = "admin"
TOKEN_NAME = "local-cli"  # noqa: S105 (a label, not a secret)
#: The token is renewed at a server start when it has less than RENEW_BEFORE left.
TOKEN_TTL = 365 * 86400.0
RENEW_BEFORE = 30 * 86400.0


class LocalLoginError(Exception):
    """The local login exists but cannot be used; the message says what to do."""


@dataclass(frozen=True)
class LocalLogin:
    url: str
    token: str
    ca_cert: Path


def login_path(data_dir: Path | None = None) -> Path:
    """``cli-login.json`` in ``data_dir`` (default: the server's default data directory)."""
    if data_dir is None:
        from peregrine.config.generate import default_data_dir

        data_dir = default_data_dir()
    return data_dir / LOGIN_FILE


def read_local_login(path: Path | None = None) -> LocalLogin | None:
    """The local login, or None when this machine has none."""
    path = path or login_path()
    try:
        data = json.loads(path.read_text("utf-8"))
        return LocalLogin(str(data["url"]), str(data["token"]), Path(data["ca_cert"]))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise LocalLoginError(
            f"cannot read {path}: it belongs to the user running the server; run the command "
            "as that user, or pass --token (peregrine users token NAME)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalLoginError(
            f"{path} is damaged ({exc}); restart `peregrine server` to write it again"
        ) from None


def api_url(config: ServerConfig) -> str:
    """The API's URL seen from this machine (loopback when it listens on every address)."""
    host = config.api_bind_address
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (reading the setting, not binding)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{config.api_port}"


def ensure_local_login(config: ServerConfig) -> Path:
    """Write the local login unless a usable one is there; return its path.

    The ``admin`` user is created when missing; a token is issued when the file is missing,
    its token no longer authenticates, or it expires within RENEW_BEFORE. Both are audited
    as ``system``.
    """
    from peregrine.auth import Accounts, AuditLog, default_audit_path
    from peregrine.config.files import SECRET_MODE, ensure_private_dir, write_atomic
    from peregrine.datastore import open_datastore

    data_dir = Path(config.data_dir)
    path = login_path(data_dir)
    url, ca_cert = api_url(config), Path(config.ca_cert_path).absolute()
    store = open_datastore(config.datastore_url)
    audit = AuditLog(store.audit, default_audit_path(data_dir))
    try:
        accounts = Accounts(store)
        try:
            current = read_local_login(path)
        except LocalLoginError:
            current = None
        if current is not None and _still_good(accounts, current.token):
            if (current.url, current.ca_cert) == (url, ca_cert):
                return path
            token = current.token  # the ports or the CA moved: same token, new address
        else:
            if accounts.get_user(ADMIN_USER) is None:
                accounts.create_user(ADMIN_USER, None, ["administrator"])
                audit.record(
                    "system", "user.create", target=ADMIN_USER,
                    parameters={"roles": ["administrator"], "password": False},
                )  # fmt: skip
            issued = accounts.create_token(ADMIN_USER, TOKEN_NAME, TOKEN_TTL)
            audit.record(
                "system", "token.create", target=issued.record.token_id,
                parameters={"user": ADMIN_USER, "name": TOKEN_NAME, "file": str(path)},
            )  # fmt: skip
            token = issued.token
        ensure_private_dir(data_dir)
        body = {"url": url, "token": token, "ca_cert": str(ca_cert)}
        write_atomic(path, json.dumps(body, indent=2) + "\n", SECRET_MODE)
        return path
    finally:
        audit.close()
        store.close()


def _still_good(accounts: Accounts, token: str) -> bool:
    """Whether the token authenticates and has more than RENEW_BEFORE left."""
    from peregrine.auth.tokens import parse_token

    parsed = parse_token(token)
    if parsed is None or accounts.authenticate_token(token) is None:
        return False
    record = accounts.get_token(parsed[0])
    return record is not None and record.expires - time.time() > RENEW_BEFORE
