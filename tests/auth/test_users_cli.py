"""``peregrine users`` on a temporary SQLite datastore: every change works and is audited."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peregrine.auth import Accounts
from peregrine.cli.users_cmd import app, parse_duration
from peregrine.config import generate
from peregrine.datastore import open_datastore

PASSWORD = "correct horse battery"
runner = CliRunner()


@pytest.fixture
def where(tmp_path: Path) -> list[str]:
    return [
        "--datastore-url",
        f"sqlite:///{tmp_path}/peregrine.db",
        "--audit-file",
        str(tmp_path / "audit.jsonl"),
    ]


def run(args: list[str], input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, args, input=input)
    return result.exit_code, result.stdout, result.stderr


def audit_lines(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_add_with_password_on_stdin_then_list(where: list[str], tmp_path: Path) -> None:
    code, out, err = run(
        ["add", "Alice", "--role", "analyst", "--password-stdin", *where], PASSWORD + "\n"
    )
    assert code == 0, err
    assert "alice: analyst" in out
    code, out, _ = run(["list", "--json", *where[:2]])
    assert code == 0
    (user,) = json.loads(out)
    assert user["name"] == "alice" and user["roles"] == ["analyst"]
    assert "FILESYSTEM_READ" in user["permissions"] and user["has_password"]
    code, out, _ = run(["list", *where[:2]])
    assert code == 0 and "alice" in out and "analyst" in out
    (line,) = audit_lines(tmp_path)
    assert line["actor"] == f"local:{getpass.getuser()}"
    assert line["action"] == "user.create" and line["target"] == "Alice"
    assert line["credential"] == "local" and line["result"] == "ok"
    with open_datastore(where[1]) as store:
        assert Accounts(store).authenticate_password("alice", PASSWORD) is not None
        assert store.audit.count(action="user.create") == 1


def test_add_prompts_twice_and_defaults_to_reader(where: list[str]) -> None:
    code, out, err = run(["add", "bob", *where], f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, err
    assert "bob: reader" in out
    code, _, _ = run(["add", "carol", *where], f"{PASSWORD}\nsomething else entirely\n")
    assert code != 0


def test_weak_password_is_refused_and_audited(where: list[str], tmp_path: Path) -> None:
    code, _, err = run(["add", "alice", "--password-stdin", *where], "short\n")
    assert code == 1
    assert "at least 12" in err
    (line,) = audit_lines(tmp_path)
    assert line["result"] == "refused" and "at least 12" in str(line["reason"])
    code, out, _ = run(["list", "--json", *where[:2]])
    assert json.loads(out) == []


def test_grant_revoke_and_refusals(where: list[str], tmp_path: Path) -> None:
    run(["add", "alice", "--no-password", *where])
    code, out, _ = run(["grant", "alice", "investigator", *where])
    assert code == 0 and "investigator" in out
    code, out, _ = run(["grant", "alice", "execve", *where])
    assert code == 0 and "+ EXECVE" in out
    code, out, _ = run(["revoke", "alice", "EXECVE", *where])
    assert code == 0 and "EXECVE" not in out
    code, _, err = run(["revoke", "alice", "START_HUNT", *where])
    assert code == 1 and "through the role investigator" in err
    code, _, err = run(["grant", "alice", "wizard", *where])
    assert code == 1 and "neither a role" in err
    code, _, err = run(["grant", "nobody", "reader", *where])
    assert code == 1 and "no user nobody" in err
    actions = [(line["action"], line["result"]) for line in audit_lines(tmp_path)]
    assert actions == [
        ("user.create", "ok"),
        ("user.grant", "ok"),
        ("user.grant", "ok"),
        ("user.revoke", "ok"),
        ("user.revoke", "refused"),
        ("user.grant", "refused"),
        ("user.grant", "refused"),
    ]


def test_token_is_printed_once_and_works_until_revoked(where: list[str], tmp_path: Path) -> None:
    run(["add", "robot", "--role", "api", "--no-password", *where])
    code, out, err = run(["token", "robot", "--name", "ci", "--expires", "2d", *where])
    assert code == 0, err
    token = out.strip()
    assert token.startswith("prg_") and "cannot be shown again" in err
    with open_datastore(where[1]) as store:
        principal = Accounts(store).authenticate_token(token)
        assert principal is not None and principal.name == "robot"
    code, out, _ = run(["tokens", "robot", "--json", *where[:2]])
    (listed,) = json.loads(out)
    assert listed["name"] == "ci" and listed["revoked"] is None
    assert listed["expires"] - listed["created"] == 2 * 86400
    assert token.split("_", 2)[2] not in out
    code, out, _ = run(["tokens", "robot", *where[:2]])
    assert code == 0 and "active" in out
    code, out, _ = run(["revoke-token", listed["token_id"], *where])
    assert code == 0 and "revoked" in out
    with open_datastore(where[1]) as store:
        assert Accounts(store).authenticate_token(token) is None
    code, _, err = run(["revoke-token", "0000000000000000", *where])
    assert code == 1 and "no token" in err
    secret = token.split("_", 2)[2]
    assert secret not in (tmp_path / "audit.jsonl").read_text()
    for db_file in tmp_path.glob("peregrine.db*"):  # the database and its WAL
        assert secret.encode() not in db_file.read_bytes()
    created = [line for line in audit_lines(tmp_path) if line["action"] == "token.create"]
    assert created[0]["parameters"]["token_id"] == listed["token_id"]  # type: ignore[index]


def test_token_with_a_bad_lifetime_is_refused(where: list[str]) -> None:
    run(["add", "robot", "--no-password", *where])
    code, _, err = run(["token", "robot", "--expires", "forever", *where])
    assert code == 1 and "not a duration" in err


def test_disable_enable_and_password_change(where: list[str]) -> None:
    run(["add", "root-admin", "--role", "administrator", "--no-password", *where])
    run(["add", "alice", "--password-stdin", *where], PASSWORD + "\n")
    assert run(["disable", "alice", *where])[0] == 0
    with open_datastore(where[1]) as store:
        assert Accounts(store).authenticate_password("alice", PASSWORD) is None
    assert run(["enable", "alice", *where])[0] == 0
    assert run(["passwd", "alice", "--password-stdin", *where], "a new long passphrase\n")[0] == 0
    with open_datastore(where[1]) as store:
        assert Accounts(store).authenticate_password("alice", "a new long passphrase") is not None
    code, _, err = run(["disable", "root-admin", *where])
    assert code == 1 and "last enabled user with SERVER_ADMIN" in err


def test_config_option_uses_its_datastore_and_audit_file(tmp_path: Path) -> None:
    deployment = generate(tmp_path / "conf", ["wss://127.0.0.1:8443/agent"])
    config = ["--config", str(deployment.server_config_path)]
    code, _, err = run(["add", "alice", "--no-password", *config])
    assert code == 0, err
    data_dir = Path(deployment.server.data_dir)
    assert (data_dir / "peregrine.db").exists()
    lines = (data_dir / "audit.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["action"] == "user.create"


def test_without_configuration_it_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEREGRINE_DATA_DIR", str(tmp_path / "empty"))
    code, _, err = run(["list"])
    assert code == 1 and "--config" in err and "--datastore-url" in err


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("2w") == 14 * 86400
    for bad in ("0d", "d", "3y", "-1d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
