"""login_events(): records appended to a real wtmp file while it is followed, and rotated."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.plugins.event_queries import rows_while
from tests.plugins.test_accounts import BOOT_TIME, DEAD_PROCESS, USER_PROCESS, utmp_record

SQL = "SELECT action, user, tty, host, ip, pid FROM login_events(:path, 0.05) LIMIT {n}"


def _append(path: Path, *records: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(records))


def test_a_login_and_its_logout_are_seen_and_the_logout_names_the_user(tmp_path: Path) -> None:
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(utmp_record(USER_PROCESS, line="pts/9", user="old", sec=1))  # not new

    def session() -> None:
        login = utmp_record(
            USER_PROCESS,
            pid=4242,
            line="pts/0",
            user="alice",
            host="203.0.113.7",
            addr=bytes([203, 0, 113, 7]),
            sec=int(time.time()),
        )
        _append(wtmp, login[:100])  # a record written in two parts is read whole
        time.sleep(0.2)
        _append(wtmp, login[100:])
        _append(wtmp, utmp_record(DEAD_PROCESS, pid=4242, line="pts/0", sec=int(time.time())))

    rows = rows_while(SQL.format(n=2), session, params={"path": str(wtmp)})
    assert rows == [
        {
            "action": "login",
            "user": "alice",
            "tty": "pts/0",
            "host": "203.0.113.7",
            "ip": "203.0.113.7",
            "pid": 4242,
        },
        {
            "action": "logout",
            "user": "alice",
            "tty": "pts/0",
            "host": None,
            "ip": None,
            "pid": 4242,
        },
    ]


def test_a_rotated_wtmp_is_followed_into_the_new_file(tmp_path: Path) -> None:
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(b"")

    def rotate() -> None:
        os.rename(wtmp, tmp_path / "wtmp.1")
        wtmp.write_bytes(utmp_record(BOOT_TIME, line="~", user="reboot", host="6.1.0"))

    rows = rows_while(SQL.format(n=1), rotate, params={"path": str(wtmp)})
    assert rows[0]["action"] == "boot" and rows[0]["host"] == "6.1.0"
