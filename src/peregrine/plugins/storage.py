"""Storage: mounted file systems (``mounts``) and block devices (``disks``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from peregrine.engine.context import QueryContext
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

_SYS_BLOCK = Path("/sys/block")
_SECTOR = 512  # /sys/block/*/size counts 512-byte sectors whatever the device's sector size


class _Usage:
    """Space and inode counts of one mount, asked of the OS once however many columns use them.

    statvfs on a dead network mount can block for a long time, which is why these columns are
    lazy: a query that does not read them never touches the file system.
    """

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint
        self._space: Any = None
        self._inodes: os.statvfs_result | None = None

    def space(self, field: str) -> Any:
        if self._space is None:
            self._space = psutil.disk_usage(self.mountpoint)
        return getattr(self._space, field)

    def inodes(self, field: str) -> int | None:
        if not hasattr(os, "statvfs"):
            return None
        if self._inodes is None:
            self._inodes = os.statvfs(self.mountpoint)
        value: int = getattr(self._inodes, field)
        return value


@table(
    name="mounts",
    description="Mounted file systems with their options, and space and inode usage on demand.",
    arguments=[
        Arg(
            "physical",
            "INTEGER",
            "1: only file systems on devices, as df shows them; 0 (default): every mount, "
            "including proc, tmpfs, cgroup and bind mounts.",
            default=0,
        ),
    ],
    columns=[
        Col("device", "TEXT", "Mounted device or source (/dev/sda1, tmpfs, server:/export)."),
        Col("mountpoint", "TEXT", "Where it is mounted."),
        Col("fstype", "TEXT", "File system type (ext4, xfs, tmpfs, nfs ...)."),
        Col("options", "TEXT", "Mount options, comma-separated."),
        Col("read_only", "INTEGER", "1 when mounted read-only."),
        Col("total", "INTEGER", "Size, bytes.", expensive=True),
        Col("used", "INTEGER", "Used space, bytes.", expensive=True),
        Col("free", "INTEGER", "Space free to unprivileged users, bytes.", expensive=True),
        Col("percent", "REAL", "Used space, percent (as df computes it).", expensive=True),
        Col("inodes_total", "INTEGER", "Inodes (NULL on Windows).", expensive=True),
        Col("inodes_free", "INTEGER", "Free inodes (NULL on Windows).", expensive=True),
    ],
    examples=(
        "SELECT mountpoint, fstype, options FROM mounts() WHERE options LIKE '%noexec%'",
        "SELECT mountpoint, percent FROM mounts(1) WHERE percent > 90",
    ),
)
def mounts(ctx: QueryContext, physical: int | None = 0) -> Iterator[dict[str, Any]]:
    for part in ctx.checked(psutil.disk_partitions(all=not physical)):
        usage = _Usage(part.mountpoint)
        options = part.opts or ""
        yield {
            "device": part.device or None,
            "mountpoint": part.mountpoint,
            "fstype": part.fstype or None,
            "options": options or None,
            "read_only": int("ro" in options.split(",")),
            "total": Lazy(usage.space, "total"),
            "used": Lazy(usage.space, "used"),
            "free": Lazy(usage.space, "free"),
            "percent": Lazy(usage.space, "percent"),
            "inodes_total": Lazy(usage.inodes, "f_files"),
            "inodes_free": Lazy(usage.inodes, "f_favail"),
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _partitions(dev: Path) -> list[dict[str, Any]]:
    """Partitions of a disk: subdirectories of its sysfs node that have a ``partition`` file."""
    parts = []
    try:
        children = sorted(dev.iterdir())
    except OSError:
        return []
    for child in children:
        if not (child / "partition").exists():
            continue
        sectors = _read_int(child / "size")
        parts.append(
            {
                "name": child.name,
                "number": _read_int(child / "partition"),
                "start": _read_int(child / "start"),
                "size": sectors * _SECTOR if sectors is not None else None,
            }
        )
    return parts


@table(
    name="disks",
    description="Block devices (whole disks) from /sys/block: size, model, flags, partitions, I/O.",
    platforms=("linux",),
    columns=[
        Col("name", "TEXT", "Kernel name (sda, nvme0n1, vda, loop0 ...)."),
        Col("device", "TEXT", "Device node, /dev/<name>."),
        Col("size", "INTEGER", "Capacity, bytes."),
        Col("model", "TEXT", "Model string reported by the device (NULL when none)."),
        Col("vendor", "TEXT", "Vendor string reported by the device (NULL when none)."),
        Col("serial", "TEXT", "Serial number, when the kernel exposes it."),
        Col("removable", "INTEGER", "1 for removable media (USB sticks, card readers)."),
        Col("rotational", "INTEGER", "1 for spinning disks, 0 for solid state or virtual."),
        Col("read_only", "INTEGER", "1 when the device is read-only."),
        Col("virtual", "INTEGER", "1 for devices with no hardware behind them (loop, zram, dm)."),
        Col("partitions", "JSON", "Partitions: [{name, number, start (sector), size (bytes)}]."),
        Col("read_count", "INTEGER", "Reads completed since boot."),
        Col("write_count", "INTEGER", "Writes completed since boot."),
        Col("read_bytes", "INTEGER", "Bytes read since boot."),
        Col("write_bytes", "INTEGER", "Bytes written since boot."),
    ],
    examples=(
        "SELECT name, size, model, removable FROM disks() WHERE NOT virtual",
        "SELECT d.name, p.value ->> 'name' FROM disks() d, json_each(d.partitions) p",
    ),
)
def disks(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    try:
        names = sorted(p.name for p in _SYS_BLOCK.iterdir())
    except OSError:
        return  # no sysfs (a restricted container): nothing to list
    try:
        io: dict[str, Any] = psutil.disk_io_counters(perdisk=True, nowrap=True) or {}
    except (OSError, RuntimeError):
        io = {}
    for name in ctx.checked(names):
        dev = _SYS_BLOCK / name
        sectors = _read_int(dev / "size")
        counters = io.get(name)
        try:
            real = str(dev.resolve())
        except OSError:
            real = ""
        yield {
            "name": name,
            "device": f"/dev/{name}",
            "size": sectors * _SECTOR if sectors is not None else None,
            "model": _read(dev / "device" / "model"),
            "vendor": _read(dev / "device" / "vendor"),
            "serial": _read(dev / "device" / "serial") or _read(dev / "serial"),
            "removable": _read_int(dev / "removable"),
            "rotational": _read_int(dev / "queue" / "rotational"),
            "read_only": _read_int(dev / "ro"),
            "virtual": int("/devices/virtual/" in real),
            "partitions": _partitions(dev),
            "read_count": getattr(counters, "read_count", None),
            "write_count": getattr(counters, "write_count", None),
            "read_bytes": getattr(counters, "read_bytes", None),
            "write_bytes": getattr(counters, "write_bytes", None),
        }


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [mounts, disks]
