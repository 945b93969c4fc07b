"""users, groups, logged_in and last_logins, on this machine's accounts and real utmp files."""

from __future__ import annotations

import grp
import gzip
import os
import pwd
import shutil
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from peregrine.engine import Engine
from peregrine.engine.errors import PluginError
from peregrine.plugins import accounts

# --- a utmp writer of the test's own, by field offsets (see `man 5 utmp`) -----------------------

USER_PROCESS, DEAD_PROCESS, BOOT_TIME, LOGIN_PROCESS = 7, 8, 2, 6


def utmp_record(
    ut_type: int,
    *,
    pid: int = 0,
    line: str = "",
    ut_id: str = "",
    user: str = "",
    host: str = "",
    term: int = 0,
    exit_: int = 0,
    session: int = 0,
    sec: int = 0,
    usec: int = 0,
    addr: bytes = b"",
) -> bytes:
    rec = bytearray(384)
    struct.pack_into("<h", rec, 0, ut_type)
    struct.pack_into("<i", rec, 4, pid)
    rec[8 : 8 + len(line)] = line.encode()
    rec[40 : 40 + len(ut_id)] = ut_id.encode()
    rec[44 : 44 + len(user)] = user.encode()
    rec[76 : 76 + len(host)] = host.encode()
    struct.pack_into("<hh", rec, 332, term, exit_)
    struct.pack_into("<i", rec, 336, session)
    struct.pack_into("<ii", rec, 340, sec, usec)
    rec[348 : 348 + len(addr)] = addr
    return bytes(rec)


V6 = "2001:db8::42"
RECORDS = [
    utmp_record(
        BOOT_TIME, line="~", ut_id="~~", user="reboot", host="6.1.0-18-amd64", sec=1_699_990_000
    ),
    utmp_record(
        USER_PROCESS,
        pid=4242,
        line="pts/3",
        ut_id="ts/3",
        user="alice",
        host="203.0.113.7",
        session=4242,
        sec=1_700_000_000,
        usec=123_456,
        addr=socket.inet_pton(socket.AF_INET, "203.0.113.7"),
    ),
    utmp_record(
        USER_PROCESS,
        pid=5151,
        line="pts/4",
        ut_id="ts/4",
        user="bob",
        host=V6,
        session=5151,
        sec=1_700_000_100,
        usec=1,
        addr=socket.inet_pton(socket.AF_INET6, V6),
    ),
    utmp_record(
        DEAD_PROCESS, pid=4242, line="pts/3", ut_id="ts/3", term=0, exit_=3, sec=1_700_003_600
    ),
    utmp_record(0),  # an EMPTY slot: never a row
]


def write(path: Path, *records: bytes) -> Path:
    path.write_bytes(b"".join(records))
    return path


def run(engine: Engine, sql: str, params: Any = None) -> tuple[list[dict[str, Any]], list[str]]:
    result = engine.execute(sql, params)
    names = [c.name for c in result.columns]
    rows = [dict(zip(names, row, strict=True)) for row in result]
    return rows, result.warnings


# --- users / groups -----------------------------------------------------------------------------


def test_users_has_root_with_uid_0(query):
    rows = query("SELECT * FROM users() WHERE username = 'root'")
    assert len(rows) == 1
    assert rows[0]["uid"] == 0 and rows[0]["gid"] == 0
    assert rows[0]["home"] == pwd.getpwnam("root").pw_dir


def test_users_match_the_account_database(query):
    rows = {r["username"]: r for r in query("SELECT * FROM users()")}
    expected = pwd.getpwall()
    assert set(rows) == {e.pw_name for e in expected}
    for e in expected:
        row = rows[e.pw_name]
        assert (row["uid"], row["gid"], row["home"], row["shell"], row["description"]) == (
            e.pw_uid,
            e.pw_gid,
            e.pw_dir,
            e.pw_shell,
            e.pw_gecos,
        )
        login = not (e.pw_shell.endswith("/nologin") or e.pw_shell.endswith("/false"))
        assert row["is_login_shell"] == int(login), e.pw_name


def test_users_uid_filter_is_pushed_down_and_exact(query):
    assert [r["username"] for r in query("SELECT username FROM users WHERE uid = 0")] == ["root"]
    assert query("SELECT * FROM users WHERE username = 'no-such-user-peregrine'") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="/etc/shadow is readable by root only")
def test_users_password_state_comes_from_shadow(query):
    shadow = {
        f[0]: f
        for f in (line.split(":") for line in Path("/etc/shadow").read_text().splitlines())
        if len(f) > 2
    }
    for row in query("SELECT * FROM users()"):
        fields = shadow.get(row["username"])
        if fields is None or pwd.getpwnam(row["username"]).pw_passwd != "x":
            continue
        hashed = fields[1]
        want = "none" if hashed == "" else "locked" if hashed[0] in "!*" else "set"
        assert row["password_status"] == want, row["username"]
        assert row["last_change"] == (int(fields[2]) * 86400 if fields[2] else None)


def test_groups_has_root_gid_0_and_members_as_json(query):
    rows = query("SELECT name, gid, json_array_length(members) AS n FROM groups() WHERE gid = 0")
    assert rows == [{"name": "root", "gid": 0, "n": len(grp.getgrgid(0).gr_mem)}]
    everything = query("SELECT g.name, m.value FROM groups() g, json_each(g.members) m")
    expected = [(g.gr_name, m) for g in grp.getgrall() for m in g.gr_mem]
    assert sorted((r["name"], r["value"]) for r in everything) == sorted(expected)


def test_groups_name_filter(query):
    assert query("SELECT gid FROM groups WHERE name = 'root'") == [{"gid": 0}]
    assert query("SELECT gid FROM groups WHERE name = 'no-such-group-peregrine'") == []


# --- utmp / wtmp / btmp -------------------------------------------------------------------------


def test_last_logins_parses_every_field(query, tmp_path):
    wtmp = write(tmp_path / "wtmp", *RECORDS)
    rows = query("SELECT * FROM last_logins(?) ORDER BY time", [str(wtmp)])
    assert len(rows) == 4  # the EMPTY slot is left out
    boot, alice, bob, dead = rows
    assert boot == {
        "user": "reboot",
        "tty": "~",
        "host": "6.1.0-18-amd64",
        "pid": 0,
        "type": "BOOT_TIME",
        "time": 1_699_990_000.0,
        "ip": None,
        "session": 0,
        "id": "~~",
        "exit_status": 0,
        "source": "wtmp",
        "path": str(wtmp),
    }
    assert alice == {
        "user": "alice",
        "tty": "pts/3",
        "host": "203.0.113.7",
        "pid": 4242,
        "type": "USER_PROCESS",
        "time": pytest.approx(1_700_000_000.123456, abs=1e-7),
        "ip": "203.0.113.7",
        "session": 4242,
        "id": "ts/3",
        "exit_status": 0,
        "source": "wtmp",
        "path": str(wtmp),
    }
    assert (bob["user"], bob["host"], bob["ip"], bob["pid"]) == ("bob", V6, V6, 5151)
    assert bob["time"] == pytest.approx(1_700_000_100.000001, abs=1e-7)
    assert (dead["type"], dead["user"], dead["pid"], dead["exit_status"]) == (
        "DEAD_PROCESS",
        "",
        4242,
        3,
    )


def test_last_logins_truncated_last_record_is_skipped_with_warning(engine, tmp_path):
    wtmp = write(tmp_path / "wtmp", RECORDS[1], RECORDS[2][:100])
    rows, warnings = run(engine, "SELECT user FROM last_logins(?)", [str(wtmp)])
    assert rows == [{"user": "alice"}]
    assert any("truncated (100 of 384 bytes)" in w for w in warnings)


@pytest.mark.skipif(shutil.which("utmpdump") is None, reason="needs utmpdump (util-linux)")
def test_last_logins_reads_what_util_linux_writes(query, tmp_path):
    text = (
        "[7] [01234] [ts/0] [carol   ] [pts/0       ] [example.org         ] [10.1.2.3       ] "
        "[2023-11-14T22:13:20,654321+00:00]\n"
        "[6] [00777] [tty1] [LOGIN   ] [tty1        ] [                    ] [0.0.0.0        ] "
        "[2023-11-14T22:00:00,000000+00:00]\n"
    )
    binary = subprocess.run(
        ["utmpdump", "-r"], input=text.encode(), capture_output=True, check=True
    ).stdout
    rows = query("SELECT * FROM last_logins(?)", [str(write(tmp_path / "wtmp", binary))])
    assert [(r["user"], r["pid"], r["tty"], r["host"], r["ip"], r["type"]) for r in rows] == [
        ("carol", 1234, "pts/0", "example.org", "10.1.2.3", "USER_PROCESS"),
        ("LOGIN", 777, "tty1", "", None, "LOGIN_PROCESS"),
    ]
    assert rows[0]["time"] == pytest.approx(1_700_000_000.654321, abs=1e-7)


def test_last_logins_sources_filters_and_rotations(query, tmp_path, monkeypatch):
    monkeypatch.setattr(accounts, "LOG_DIR", tmp_path)
    write(tmp_path / "wtmp", RECORDS[1])
    with gzip.open(tmp_path / "wtmp.1.gz", "wb") as f:
        f.write(RECORDS[2])
    write(tmp_path / "btmp", utmp_record(6, pid=9, line="ssh:notty", user="admin", sec=5))
    rows = query("SELECT user, source FROM last_logins() ORDER BY user")
    assert rows == [
        {"user": "admin", "source": "btmp"},
        {"user": "alice", "source": "wtmp"},
        {"user": "bob", "source": "wtmp"},
    ]
    assert query("SELECT user FROM last_logins() WHERE source = 'btmp'") == [{"user": "admin"}]
    assert query("SELECT user FROM last_logins() WHERE user = 'bob'") == [{"user": "bob"}]
    by_path = query("SELECT user FROM last_logins WHERE path = ?", [str(tmp_path / "wtmp")])
    assert by_path == [{"user": "alice"}]
    glob = query(
        "SELECT user, source FROM last_logins(?) WHERE source = 'btmp'", [str(tmp_path / "wtmp*")]
    )
    assert sorted(r["user"] for r in glob) == ["alice", "bob"]
    assert {r["source"] for r in glob} == {"btmp"}  # the source argument labels given files


def test_last_logins_bad_source_and_missing_file(query, tmp_path):
    with pytest.raises(PluginError, match="source must be 'wtmp' or 'btmp'"):
        query("SELECT * FROM last_logins() WHERE source = 'lastlog'")
    assert query("SELECT * FROM last_logins(?)", [str(tmp_path / "nope")]) == []


def test_logged_in_reads_a_utmp_file(query, tmp_path):
    utmp = write(tmp_path / "utmp", RECORDS[1], RECORDS[4], utmp_record(LOGIN_PROCESS, pid=7))
    rows = query("SELECT user, tty, host, pid, type, time, ip FROM logged_in(?)", [str(utmp)])
    assert rows == [
        {
            "user": "alice",
            "tty": "pts/3",
            "host": "203.0.113.7",
            "pid": 4242,
            "type": "USER_PROCESS",
            "time": pytest.approx(1_700_000_000.123456, abs=1e-7),
            "ip": "203.0.113.7",
        },
        {
            "user": "",
            "tty": "",
            "host": "",
            "pid": 7,
            "type": "LOGIN_PROCESS",
            "time": 0.0,
            "ip": None,
        },
    ]


def test_logged_in_without_utmp_is_empty(query, tmp_path, monkeypatch):
    monkeypatch.setattr(accounts, "UTMP_PATHS", (tmp_path / "utmp",))
    assert query("SELECT * FROM logged_in()") == []


def test_logged_in_directory_is_a_clear_error(query, tmp_path):
    with pytest.raises(PluginError, match="is a directory"):
        query("SELECT * FROM logged_in(?)", [str(tmp_path)])
