"""info(): one row of host facts, checked against what this machine says about itself."""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import peregrine


@pytest.fixture
def row(query):
    rows = query("SELECT * FROM info()")
    assert len(rows) == 1
    return rows[0]


def test_identity_matches_this_host(row):
    assert row["hostname"] == socket.gethostname()
    assert row["kernel_release"] == platform.release()
    assert row["kernel_version"] == platform.version()
    assert row["arch"] == platform.machine()
    assert row["agent_version"] == peregrine.__version__
    assert row["python_version"] == platform.python_version()


@pytest.mark.skipif(not Path("/etc/os-release").exists(), reason="no /etc/os-release here")
def test_distribution_comes_from_os_release(row):
    release = platform.freedesktop_os_release()
    assert row["os"] == "linux"
    assert row["platform"] == release["ID"]
    assert row["platform_version"] == release.get("VERSION_ID")
    assert row["platform_name"] == release.get("PRETTY_NAME", release["NAME"])


def test_hardware_and_uptime(row):
    assert row["cpu_count"] == psutil.cpu_count()
    assert row["memory_total"] == psutil.virtual_memory().total
    assert row["boot_time"] == pytest.approx(psutil.boot_time(), abs=2)
    assert row["uptime"] == pytest.approx(time.time() - psutil.boot_time(), abs=5)
    assert row["uptime"] > 0


@pytest.mark.skipif(not Path("/etc/machine-id").exists(), reason="no /etc/machine-id here")
def test_machine_id_is_systemds(row):
    assert row["machine_id"] == Path("/etc/machine-id").read_text().strip()


def test_addresses_are_every_non_loopback_one(row):
    ips = json.loads(row["ip_addresses"])
    macs = json.loads(row["mac_addresses"])
    expected_ips = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            inet = a.family in (socket.AF_INET, socket.AF_INET6)
            if inet and not ipaddress.ip_address(a.address.split("%")[0]).is_loopback:
                expected_ips.add(a.address)
    assert set(ips) == expected_ips
    assert "127.0.0.1" not in ips
    assert "00:00:00:00:00:00" not in macs
    assert all(len(m.split(":")) == 6 for m in macs)


def test_timezone_is_named(row):
    assert row["timezone"]
    if Path("/etc/timezone").exists():
        assert row["timezone"] == Path("/etc/timezone").read_text().strip()


def test_fqdn_is_computed_when_asked(query):
    assert query("SELECT fqdn FROM info()") == [{"fqdn": socket.getfqdn()}]


def test_info_joins_with_other_tables(query):
    rows = query(
        "SELECT i.hostname, p.pid FROM info() i, pslist() p WHERE p.pid = ?", (os.getpid(),)
    )
    assert rows == [{"hostname": socket.gethostname(), "pid": os.getpid()}]


def test_pslist_columns_read_alone_have_the_values_of_a_full_row(query):
    """pslist reads from psutil only what the statement's columns need; each column read on
    its own (or two sharing one psutil call) is what ``SELECT *`` gives for this process."""
    steady = ["pid", "ppid", "name", "exe", "cmdline", "argv", "username", "uid",
              "create_time", "terminal", "cwd", "exe_deleted"]  # fmt: skip
    [full] = query("SELECT * FROM pslist() WHERE pid = ?", (os.getpid(),))
    for column in steady:
        rows = query(f"SELECT {column} FROM pslist() WHERE pid = ?", (os.getpid(),))
        assert rows == [{column: full[column]}], column
    [both] = query(
        "SELECT uid, vms, num_threads > 0 AS t FROM pslist() WHERE pid = ?", (os.getpid(),)
    )
    assert both["uid"] == full["uid"] and both["vms"] > 0 and both["t"] == 1


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def _silent_dns_server() -> tuple[str, list[socket.socket]]:
    """UDP and TCP sockets on port 53 of a loopback address, which never answer."""
    for _ in range(20):
        address = f"127.0.0.{random.randint(100, 250)}"
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((address, 53))
            tcp.bind((address, 53))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen()
        return address, [udp, tcp]
    pytest.fail("no free loopback address for a silent DNS server")


@pytest.mark.timeout(120)
@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare to replace /etc/resolv.conf")
def test_fqdn_lookup_is_bounded_where_dns_never_answers(tmp_path):
    """With the host name out of /etc/hosts and a DNS server that never answers (a mount
    namespace gives this process its own /etc/hosts and /etc/resolv.conf), glibc waits 10 s and
    more; fqdn comes back as the host name within FQDN_TIMEOUT, with a warning."""
    from peregrine.plugins.host import FQDN_TIMEOUT

    address, sockets = _silent_dns_server()
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    resolv.write_text(f"nameserver {address}\n")
    code = (
        "import json, time\n"
        "from peregrine.engine import Engine\n"
        "engine = Engine()\n"
        "started = time.monotonic()\n"
        "result = engine.execute('SELECT hostname, fqdn FROM info()')\n"
        "rows = list(result)\n"
        "print(json.dumps({'rows': rows, 'elapsed': time.monotonic() - started,\n"
        "                  'warnings': result.warnings}))\n"
    )
    script = (
        f"mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && "
        f'exec {sys.executable} -c "$0"'
    )
    try:
        run = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, code],
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    finally:
        for sock in sockets:
            sock.close()
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    [[hostname, fqdn]] = out["rows"]
    assert fqdn == hostname == socket.gethostname()
    assert out["elapsed"] < FQDN_TIMEOUT + 2, out
    assert any("resolving the fully qualified name took over" in w for w in out["warnings"])
