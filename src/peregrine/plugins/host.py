"""The host itself: ``info``, one row of identity facts to tag every other answer with."""

from __future__ import annotations

import ipaddress
import platform
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

import peregrine
from peregrine.engine.context import QueryContext
from peregrine.engine.registry import Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
#: Seconds ``info()`` waits for the fully qualified name: resolving it may ask DNS, which takes
#: 20 s and more where no DNS server answers. Past it, the host name stands in (with a warning).
FQDN_TIMEOUT = 2.0

#: sys.platform, held in a plain str so that every branch below is type-checked on every OS.
_PLATFORM: str = sys.platform


def _os_family() -> str:
    if _PLATFORM.startswith("linux"):
        return "linux"
    if _PLATFORM == "win32":
        return "windows"
    return _PLATFORM


def _distribution() -> tuple[str | None, str | None, str | None]:
    """(id, pretty name, version) of the operating system, as its own tools name it."""
    if _PLATFORM.startswith("linux"):
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            return "linux", None, None
        return (
            release.get("ID"),
            release.get("PRETTY_NAME") or release.get("NAME"),
            release.get("VERSION_ID"),
        )
    if _PLATFORM == "darwin":
        version = platform.mac_ver()[0] or None
        return "macos", f"macOS {version}" if version else "macOS", version
    if _PLATFORM == "win32":
        win_release, win_version, _, _ = platform.win32_ver()
        edition = platform.win32_edition() or ""
        return "windows", f"Windows {win_release} {edition}".strip(), win_version or None
    return _PLATFORM, None, None


def _machine_id() -> str | None:
    """A stable id of this installation: systemd's machine-id, or Windows' MachineGuid."""
    if sys.platform == "win32":  # a literal test, so type checkers know winreg is there
        import winreg

        try:
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography")
            value, _ = winreg.QueryValueEx(key, "MachineGuid")
        except OSError:
            return None
        return str(value)
    for name in _MACHINE_ID_FILES:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _timezone() -> str | None:
    """The IANA zone name when the system says it (Linux, macOS), else the abbreviation."""
    try:
        text = Path("/etc/timezone").read_text().strip()
        if text:
            return text
    except OSError:
        pass
    try:
        target = str(Path("/etc/localtime").readlink())
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        return target.split("zoneinfo/", 1)[1]
    return time.tzname[time.localtime().tm_isdst > 0] or None


def _addresses() -> tuple[list[str], list[str]]:
    """IP and MAC addresses of every interface, loopback left out (it names no host)."""
    ips: list[str] = []
    macs: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    loopback = ipaddress.ip_address(addr.address.split("%", 1)[0]).is_loopback
                except ValueError:
                    loopback = False
                if not loopback and addr.address not in ips:
                    ips.append(addr.address)
            elif addr.family == psutil.AF_LINK:
                mac = addr.address.lower().replace("-", ":")
                if mac and mac.strip("0:") and mac not in macs:
                    macs.append(mac)
    return ips, macs


def _fqdn(ctx: QueryContext) -> str:
    """``socket.getfqdn()`` within :data:`FQDN_TIMEOUT`, else the host name.

    A lookup cannot be interrupted, so it runs in a daemon thread that is left to finish (or
    not) on its own; the query does not wait for it."""
    answer: list[str] = []
    lookup = threading.Thread(
        target=lambda: answer.append(socket.getfqdn()), name="fqdn-lookup", daemon=True
    )
    lookup.start()
    deadline = time.monotonic() + FQDN_TIMEOUT
    while lookup.is_alive() and time.monotonic() < deadline:
        ctx.check()
        lookup.join(0.05)
    if answer:
        return answer[0]
    hostname = socket.gethostname()
    ctx.warn(
        f"info(): resolving the fully qualified name took over {FQDN_TIMEOUT:g} s (is DNS "
        f"reachable?); fqdn is the host name {hostname!r}"
    )
    return hostname


@table(
    name="info",
    description="One row about this host: names, OS, kernel, hardware, uptime and addresses.",
    columns=[
        Col("hostname", "TEXT", "Host name (socket.gethostname())."),
        Col(
            "fqdn",
            "TEXT",
            "Fully qualified name; resolving it may query DNS, so it is computed on demand, "
            f"waiting at most {FQDN_TIMEOUT:g} s (then the host name, with a warning).",
            expensive=True,
        ),
        Col("os", "TEXT", "OS family: linux, darwin or windows."),
        Col("platform", "TEXT", "Distribution id: debian, ubuntu, rhel, macos, windows ..."),
        Col("platform_name", "TEXT", "Human name of the OS, e.g. 'Debian GNU/Linux 12'."),
        Col("platform_version", "TEXT", "OS version, e.g. '12' (VERSION_ID of /etc/os-release)."),
        Col("kernel_release", "TEXT", "Kernel release (uname -r)."),
        Col("kernel_version", "TEXT", "Kernel build version (uname -v)."),
        Col("arch", "TEXT", "Machine architecture (uname -m), e.g. x86_64, arm64."),
        Col("boot_time", "REAL", "When the system booted, seconds since the epoch."),
        Col("uptime", "REAL", "Seconds since boot."),
        Col("cpu_count", "INTEGER", "Logical CPUs."),
        Col("cpu_physical", "INTEGER", "Physical cores (NULL when unknown)."),
        Col("memory_total", "INTEGER", "Physical memory, bytes."),
        Col("python_version", "TEXT", "Version of the Python running the agent."),
        Col("agent_version", "TEXT", "Version of Peregrine."),
        Col("machine_id", "TEXT", "/etc/machine-id on Linux, MachineGuid on Windows."),
        Col("ip_addresses", "JSON", "Non-loopback IPv4 and IPv6 addresses of all interfaces."),
        Col(
            "mac_addresses",
            "JSON",
            "Hardware addresses of all interfaces (all-zero left out).",
        ),
        Col("timezone", "TEXT", "Time zone: IANA name when known (Etc/UTC), else abbreviation."),
    ],
    examples=(
        "SELECT hostname, platform_name, kernel_release, uptime FROM info()",
        "SELECT i.hostname, p.pid, p.name FROM info() i, pslist() p",
    ),
)
def info(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    uname = platform.uname()
    dist_id, dist_name, dist_version = _distribution()
    boot = psutil.boot_time()
    ips, macs = _addresses()
    yield {
        "hostname": socket.gethostname(),
        "fqdn": Lazy(_fqdn, ctx),
        "os": _os_family(),
        "platform": dist_id,
        "platform_name": dist_name,
        "platform_version": dist_version,
        "kernel_release": uname.release or None,
        "kernel_version": uname.version or None,
        "arch": uname.machine or None,
        "boot_time": boot,
        "uptime": max(0.0, time.time() - boot),
        "cpu_count": psutil.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "memory_total": psutil.virtual_memory().total,
        "python_version": platform.python_version(),
        "agent_version": peregrine.__version__,
        "machine_id": _machine_id(),
        "ip_addresses": ips,
        "mac_addresses": macs,
        "timezone": _timezone(),
    }


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [info]
