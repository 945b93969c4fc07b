"""What a simulated client answers: canned rows, and believable facts for interrogation.

Rows cost the simulator almost nothing to make, so the load it measures is the server's. The
interrogation artifact gets one host row shaped like the real ``info()`` plugin's (the server
copies its columns into the client record) and one login user, so simulated clients look like
real ones to everything built on the client record: hunts by OS, searches by host name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from peregrine import __version__

INTERROGATION = "Generic.Client.Info"
OS_NAMES = ("linux", "windows", "darwin")
#: Canned result sets have these columns: a row number and ``row_bytes`` of payload.
CANNED_COLUMNS = ["row", "data"]
#: Canned event rows are process starts, the columns of Linux.Events.ProcessExecutions.
EVENT_COLUMNS = ["time", "action", "pid", "ppid", "name", "exe", "cmdline", "uid", "username"]


def event_rows(index: int, seq: int, count: int, now: float) -> list[list[Any]]:
    """``count`` process starts of client ``index``, numbered from ``seq``; one in 1,000 runs
    a program from /tmp (what the built-in rule Linux.ProcessFromTmp looks for)."""
    rows: list[list[Any]] = []
    for n in range(seq, seq + count):
        exe = "/tmp/.cache/x" if n % 1000 == 999 else f"/usr/bin/tool{n % 97}"  # noqa: S108
        user = f"user{(index + n) % 20}"
        rows.append(
            [now, "start", 1000 + n % 30000, 1 + n % 50, exe.rsplit("/", 1)[1], exe,
             f"{exe} --run {n % 13}", 1000 + (index + n) % 20, user]
        )  # fmt: skip
    return rows


_PROFILES: dict[str, dict[str, Any]] = {
    "linux": {
        "platform": "debian",
        "platform_name": "Debian GNU/Linux 12 (bookworm)",
        "platform_version": "12",
        "kernel_release": "6.1.0-sim-amd64",
        "arch": "x86_64",
        "timezone": "Etc/UTC",
    },
    "windows": {
        "platform": "windows",
        "platform_name": "Windows 10 Pro",
        "platform_version": "10.0.19045",
        "kernel_release": "10.0.19045",
        "arch": "AMD64",
        "timezone": "UTC",
    },
    "darwin": {
        "platform": "macos",
        "platform_name": "macOS 14.4",
        "platform_version": "14.4",
        "kernel_release": "23.4.0",
        "arch": "arm64",
        "timezone": "Etc/UTC",
    },
}

HOST_COLUMNS = [
    "hostname", "fqdn", "os", "platform", "platform_name", "platform_version", "kernel_release",
    "arch", "boot_time", "uptime", "cpu_count", "memory_total", "machine_id", "ip_addresses",
    "mac_addresses", "timezone", "agent_version",
]  # fmt: skip
USER_COLUMNS = ["username", "uid", "home", "shell"]

_GOLDEN = 0.6180339887498949


def hostname_for(index: int) -> str:
    return f"sim-{index:05d}"


def os_chooser(mix: Mapping[str, float]) -> Callable[[int], str]:
    """An ``os_for(index)`` that gives each OS its share of ``mix`` (weights, e.g. {"linux": 3,
    "windows": 1}), spread evenly over the indices rather than in blocks."""
    unknown = set(mix) - set(OS_NAMES)
    if unknown:
        raise ValueError(f"unknown OS {sorted(unknown)}: use {', '.join(OS_NAMES)}")
    weights = [(name, float(w)) for name, w in mix.items() if w > 0]
    total = sum(w for _, w in weights)
    if not weights or total <= 0:
        raise ValueError("the OS mix needs at least one positive weight")
    bounds: list[tuple[float, str]] = []
    acc = 0.0
    for name, weight in weights:
        acc += weight / total
        bounds.append((acc, name))

    def os_for(index: int) -> str:
        point = (index * _GOLDEN) % 1.0  # low-discrepancy: every prefix is close to the mix
        return next((name for bound, name in bounds if point < bound), bounds[-1][1])

    return os_for


def parse_os_mix(text: str) -> dict[str, float]:
    """``"linux=3,windows=1"`` (or just ``"linux"``) as weights."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if not name:
            continue
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: expected OS=WEIGHT, e.g. linux=3") from None
    return mix


def host_row(index: int, os_name: str, address: str, boot_time: float) -> list[Any]:
    """The interrogation ``host`` row for simulated client ``index``, in HOST_COLUMNS order."""
    profile = _PROFILES[os_name]
    name = hostname_for(index)
    ip = [address, f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"]
    mac = ["02:53:" + ":".join(f"{(index >> s) & 255:02x}" for s in (24, 16, 8, 0))]
    facts = {
        "hostname": name,
        "fqdn": f"{name}.sim.example",
        "os": os_name,
        **profile,
        "boot_time": boot_time,
        "uptime": 3600.0,
        "cpu_count": 4,
        "memory_total": 8 << 30,
        "machine_id": f"{index:032x}",
        "ip_addresses": json.dumps(ip),
        "mac_addresses": json.dumps(mac),
        "agent_version": f"{__version__}+sim",
    }
    return [facts[c] for c in HOST_COLUMNS]


def user_rows(os_name: str) -> list[list[Any]]:
    home = {"windows": "C:\\Users\\sim", "darwin": "/Users/sim"}.get(os_name, "/home/sim")
    shell = None if os_name == "windows" else "/bin/bash"
    return [["sim", 1000, home, shell]]


def payload(row_bytes: int) -> str:
    return "x" * max(0, row_bytes)


def canned_rows(start: int, end: int, data: str) -> list[list[Any]]:
    return [[i, data] for i in range(start, end)]
