"""The operating system's own inventory: ``kernel_modules``, ``services`` and ``packages``.

Each reads the system's files directly where their format is stable (/proc/modules, systemd unit
files, dpkg's status database), so it also works where the usual tool cannot: in a container
without systemd as PID 1, or on a disk image mounted under another root.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from peregrine.engine.context import QueryContext
from peregrine.engine.registry import Arg, Col, Lazy, Plugin, table
from peregrine.hookspecs import hookimpl

_COMMAND_TIMEOUT = 30.0


def _run(ctx: QueryContext, argv: list[str]) -> str | None:
    """Output of a system tool, or None when it failed; never runs past the query's deadline."""
    timeout = _COMMAND_TIMEOUT
    if ctx.deadline is not None:
        timeout = max(0.1, min(timeout, ctx.deadline - time.monotonic()))
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        )
    except subprocess.TimeoutExpired:
        ctx.check()  # the query's own deadline: report it as such
        ctx.warn(f"{argv[0]} took longer than {timeout:g} s; its output is left out")
        return None
    except OSError as exc:
        ctx.warn(f"cannot run {argv[0]}: {exc}")
        return None
    if done.returncode != 0:
        return None
    return done.stdout


# --------------------------------------------------------------------------- kernel_modules


def _modules_dep(release: str) -> dict[str, str]:
    """Module name -> file, from depmod's index of the running kernel's modules."""
    base = Path("/lib/modules") / release
    files: dict[str, str] = {}
    try:
        with open(base / "modules.dep", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                rel = line.split(":", 1)[0].strip()
                if not rel:
                    continue
                stem = PurePosixPath(rel).name.split(".ko", 1)[0]
                files[stem.replace("-", "_")] = rel if rel.startswith("/") else str(base / rel)
    except OSError:
        pass
    return files


def _sys_module(name: str, attr: str) -> str | None:
    try:
        return (Path("/sys/module") / name / attr).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _modinfo_description(ctx: QueryContext, name: str) -> str | None:
    if shutil.which("modinfo") is None:
        return None
    out = _run(ctx, ["modinfo", "-F", "description", name])
    return out.strip() or None if out else None


def parse_proc_modules_line(line: str) -> dict[str, Any] | None:
    """One line of /proc/modules: ``name size refcount used_by state address [taint]``."""
    fields = line.split()
    if len(fields) < 3:
        return None
    used = fields[3] if len(fields) > 3 else "-"
    taint = fields[6].strip("()") if len(fields) > 6 else None
    try:
        size, refcount = int(fields[1]), int(fields[2])
    except ValueError:
        return None
    return {
        "name": fields[0],
        "size": size,
        "refcount": refcount,
        "used_by": [m for m in used.split(",") if m and m != "-"],
        "state": fields[4] if len(fields) > 4 else None,
        "address": fields[5] if len(fields) > 5 else None,
        "taint": taint or None,
    }


@table(
    name="kernel_modules",
    description="Loaded Linux kernel modules (/proc/modules), with file and version from sysfs.",
    platforms=("linux",),
    arguments=[
        Arg(
            "path",
            "TEXT",
            "A file in /proc/modules format to read instead of the live one (e.g. a saved copy).",
            default="/proc/modules",
        ),
    ],
    columns=[
        Col("name", "TEXT", "Module name."),
        Col("size", "INTEGER", "Memory the module occupies, bytes."),
        Col("refcount", "INTEGER", "How many users hold it (modules and open handles)."),
        Col("used_by", "JSON", "Modules that depend on it."),
        Col("state", "TEXT", "Live, Loading or Unloading."),
        Col("address", "TEXT", "Load address (zero unless read by root with kptr_restrict off)."),
        Col("taint", "TEXT", "Taint flags: O out-of-tree, E unsigned, P proprietary ... or NULL."),
        Col("filename", "TEXT", "Module file, from modules.dep of the running kernel."),
        Col("version", "TEXT", "MODULE_VERSION, from /sys/module/<name>/version."),
        Col("srcversion", "TEXT", "Checksum of the module's source, from sysfs."),
        Col("description", "TEXT", "Description (runs modinfo, so on demand).", expensive=True),
    ],
    examples=(
        "SELECT name, taint, filename FROM kernel_modules() WHERE taint IS NOT NULL",
        "SELECT name FROM kernel_modules() WHERE filename IS NULL",
    ),
)
def kernel_modules(
    ctx: QueryContext, path: str | None = "/proc/modules"
) -> Iterator[dict[str, Any]]:
    source = Path(path or "/proc/modules")
    if not source.is_file():
        return
    files = _modules_dep(platform.release())
    with open(source, encoding="utf-8", errors="replace") as fh:
        for line in ctx.checked(fh):
            row = parse_proc_modules_line(line)
            if row is None:
                if line.strip():
                    ctx.warn(f"kernel_modules(): skipped a line it cannot parse: {line.strip()!r}")
                continue
            name = row["name"]
            yield {
                **row,
                "filename": files.get(name.replace("-", "_")),
                "version": _sys_module(name, "version"),
                "srcversion": _sys_module(name, "srcversion"),
                "description": Lazy(_modinfo_description, ctx, name),
            }


# --------------------------------------------------------------------------------- services

#: systemd's unit search path for the system manager, highest priority first.
UNIT_DIRS = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)

UNIT_TYPES = (
    "service",
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
)

#: Directories whose ``*.wants``/``*.requires`` links mean "enabled" (persistently or at runtime).
_ENABLE_DIRS = (("/etc/systemd/system", "enabled"), ("/run/systemd/system", "enabled-runtime"))
_DEPENDENCY_DIRS = (".wants", ".requires", ".upholds")


def resolve_in_root(root: Path, path: str, max_links: int = 40) -> PurePosixPath | None:
    """Resolve ``path`` as the system mounted at ``root`` sees it: absolute links stay inside.

    Returns the resolved path within that system, or None for a link loop. For root ``/`` it is
    ordinary resolution.
    """
    pending = list(PurePosixPath(path).parts[1:])
    current = PurePosixPath("/")
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            current = current.parent
            continue
        candidate = current / part
        host = root / candidate.relative_to("/")
        try:
            target = str(host.readlink())
        except OSError:
            current = candidate  # not a link (or missing): keep the name as it is
            continue
        max_links -= 1
        if max_links < 0:
            return None
        target_path = PurePosixPath(target)
        if target_path.is_absolute():
            current = PurePosixPath("/")
            pending = list(target_path.parts[1:]) + pending
        else:
            pending = list(target_path.parts) + pending
    return current


def _host_path(root: Path, path: PurePosixPath) -> Path:
    return root / path.relative_to("/")


def parse_unit_text(
    text: str, into: dict[str, dict[str, list[str]]] | None = None
) -> dict[str, dict[str, list[str]]]:
    """Parse a systemd unit (or drop-in) into section -> key -> values.

    Keys may repeat; an empty assignment (``ExecStart=``) resets the list, as systemd does, so
    parsing drop-ins ``into`` the main file's result applies them like systemd would.
    """
    sections = into if into is not None else {}
    section: dict[str, list[str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1].strip(), {})
            continue
        if section is None or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if value:
            section.setdefault(key, []).append(value)
        else:
            section[key] = []
    return sections


@dataclass
class UnitFile:
    """A unit file found on the search path: where, whether it is a link, and its settings."""

    name: str
    root: Path
    path: PurePosixPath  # where it was found, as the system sees it
    link_target: str | None
    masked: bool
    alias_of: str | None
    dropins: list[PurePosixPath] = field(default_factory=list)
    _parsed: dict[str, dict[str, list[str]]] | None = None

    def settings(self) -> dict[str, dict[str, list[str]]]:
        if self._parsed is None:
            parsed: dict[str, dict[str, list[str]]] = {}
            if not self.masked:
                for path in [self.path, *self.dropins]:
                    resolved = resolve_in_root(self.root, str(path))
                    if resolved is None:
                        continue
                    try:
                        text = _host_path(self.root, resolved).read_text(errors="replace")
                    except OSError:
                        continue
                    parse_unit_text(text, parsed)
            self._parsed = parsed
        return self._parsed

    def get(self, section: str, key: str) -> list[str]:
        return self.settings().get(section, {}).get(key, [])

    def first(self, section: str, key: str) -> str | None:
        values = self.get(section, key)
        return values[-1] if values else None

    def exec_start(self) -> str | None:
        commands = self.get("Service", "ExecStart")
        return "\n".join(commands) if commands else None

    def user(self) -> str | None:
        return self.first("Service", "User")

    def install_state(self) -> str:
        """disabled when it can be enabled ([Install] names a target), else static."""
        if self.masked:
            return "masked"
        if self.alias_of is not None:
            return "alias"
        install = self.settings().get("Install", {})
        if any(install.get(k) for k in ("WantedBy", "RequiredBy", "UpheldBy", "Alias")):
            return "disabled"
        if install.get("Also"):
            return "indirect"
        return "static"


def _is_unit_name(name: str) -> bool:
    stem, dot, suffix = name.rpartition(".")
    return bool(stem and dot and suffix in UNIT_TYPES)


def index_unit_files(ctx: QueryContext, root: Path) -> dict[str, UnitFile]:
    """Every unit file on the search path; a name found earlier hides the same name later."""
    units: dict[str, UnitFile] = {}
    seen_dirs: set[PurePosixPath] = set()
    dropins: dict[str, dict[str, PurePosixPath]] = {}
    for unit_dir in UNIT_DIRS:
        resolved_dir = resolve_in_root(root, unit_dir)
        if resolved_dir is None or resolved_dir in seen_dirs:
            continue  # /lib is a link to /usr/lib on merged-/usr systems
        seen_dirs.add(resolved_dir)
        host_dir = _host_path(root, resolved_dir)
        try:
            entries = sorted(os.scandir(host_dir), key=lambda e: e.name)
        except OSError:
            continue
        for entry in ctx.checked(entries):
            name = entry.name
            found = PurePosixPath(unit_dir) / name
            if name.endswith(".d") and _is_unit_name(name[:-2]):
                confs = dropins.setdefault(name[:-2], {})
                try:
                    conf_names = sorted(p.name for p in Path(entry.path).iterdir())
                except OSError:
                    continue
                for conf in conf_names:
                    if conf.endswith(".conf"):
                        confs.setdefault(conf, found / conf)  # earlier dirs override
                continue
            if not _is_unit_name(name) or name in units:
                continue
            units[name] = _unit_file(root, name, found, entry)
    for name, unit in units.items():
        confs = dropins.get(name, {})
        # Drop-ins of a template apply to its instances, and of foo-.service to foo-bar.service,
        # but only a unit's own drop-ins are listed here: the file as written.
        unit.dropins = [confs[c] for c in sorted(confs)]
    return units


def _unit_file(root: Path, name: str, found: PurePosixPath, entry: os.DirEntry[str]) -> UnitFile:
    link_target: str | None = None
    masked = False
    alias_of: str | None = None
    if entry.is_symlink():
        try:
            link_target = str(Path(entry.path).readlink())
        except OSError:
            link_target = None
        resolved = resolve_in_root(root, str(found))
        masked = resolved == PurePosixPath("/dev/null")
        if resolved is not None and not masked and resolved.name != name:
            alias_of = resolved.name
    else:
        with contextlib.suppress(OSError):
            masked = entry.stat().st_size == 0  # systemd treats an empty unit file as masked
    return UnitFile(name, root, found, link_target, masked, alias_of)


def _enabled_links(root: Path) -> dict[str, str]:
    """Units (and templates of instances) linked from a ``*.wants`` directory: enabled."""
    enabled: dict[str, str] = {}
    for base, state in _ENABLE_DIRS:
        resolved = resolve_in_root(root, base)
        if resolved is None:
            continue
        try:
            dirs = list(os.scandir(_host_path(root, resolved)))
        except OSError:
            continue
        for entry in dirs:
            if not entry.name.endswith(_DEPENDENCY_DIRS) or not entry.is_dir():
                continue
            try:
                names = [p.name for p in Path(entry.path).iterdir()]
            except OSError:
                continue
            for name in names:
                enabled.setdefault(name, state)
                template = _template_of(name)
                if template is not None:
                    enabled.setdefault(template, state)
    return enabled


def _template_of(name: str) -> str | None:
    if "@" not in name:
        return None
    prefix, _, rest = name.partition("@")
    return f"{prefix}@.{rest.rpartition('.')[2]}"


def systemd_running(root: Path) -> bool:
    """systemd's own test (sd_booted): it runs as PID 1 when /run/systemd/system exists."""
    return root == Path("/") and Path("/run/systemd/system").is_dir()


def parse_list_units_plain(text: str) -> list[dict[str, str]]:
    """``systemctl list-units --plain --no-legend`` output, for systemd without --output=json."""
    units = []
    for line in text.splitlines():
        fields = line.split(None, 4)
        if fields and fields[0] in ("●", "*"):
            fields = line.split(None, 5)[1:]
        if len(fields) < 4:
            continue
        units.append(
            {
                "unit": fields[0],
                "load": fields[1],
                "active": fields[2],
                "sub": fields[3],
                "description": fields[4] if len(fields) > 4 else "",
            }
        )
    return units


def _systemctl_json(ctx: QueryContext, command: str) -> list[dict[str, Any]] | None:
    out = _run(ctx, ["systemctl", command, "--all", "--output=json", "--no-pager"])
    if out is None:
        return None
    try:
        data = json.loads(out)
    except ValueError:
        return None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else None


def _live_units(ctx: QueryContext) -> tuple[list[dict[str, Any]], dict[str, str]] | None:
    """Loaded units and unit-file states from the running systemd, or None if it cannot say."""
    units = _systemctl_json(ctx, "list-units")
    if units is None:
        out = _run(
            ctx, ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager"]
        )
        if out is None:
            return None
        units = list(parse_list_units_plain(out))
    states: dict[str, str] = {}
    files = _systemctl_json(ctx, "list-unit-files")
    if files is None:
        out = _run(ctx, ["systemctl", "list-unit-files", "--plain", "--no-legend", "--no-pager"])
        for line in (out or "").splitlines():
            fields = line.split()
            if len(fields) >= 2:
                states[fields[0]] = fields[1]
    else:
        states = {str(f.get("unit_file")): str(f.get("state")) for f in files}
    return units, states


@table(
    name="services",
    description=(
        "systemd units (services, timers, sockets ...): state from the running systemd, "
        "and what their unit files say; unit files alone when systemd is not running."
    ),
    platforms=("linux",),
    arguments=[
        Arg(
            "source",
            "TEXT",
            "Filter: WHERE source = 'files' reads unit files only and never runs systemctl.",
        ),
        Arg(
            "root",
            "TEXT",
            "Read the unit files of a system mounted here (a disk image) instead of this one.",
        ),
    ],
    columns=[
        Col("unit", "TEXT", "Unit name, e.g. ssh.service."),
        Col("type", "TEXT", "service, socket, timer, target, mount ..."),
        Col("load", "TEXT", "loaded, not-found, masked ... (NULL when not from systemd)."),
        Col("active", "TEXT", "active, inactive, failed ... (NULL when not from systemd)."),
        Col("sub", "TEXT", "running, exited, dead, listening ... (NULL when not from systemd)."),
        Col("description", "TEXT", "Description= of the unit."),
        Col(
            "enabled",
            "TEXT",
            "Unit file state: enabled, disabled, static, masked, alias, indirect ...",
        ),
        Col("path", "TEXT", "Unit file, where it was found on systemd's search path."),
        Col("link_target", "TEXT", "Where the unit file links to, when it is a symlink."),
        Col("dropins", "JSON", "Drop-in files (<unit>.d/*.conf) that change it."),
        Col("exec_start", "TEXT", "ExecStart= command lines, one a line.", expensive=True),
        Col("user", "TEXT", "User= it runs as (NULL: root).", expensive=True),
        Col(
            "source",
            "TEXT",
            "systemd: state from the running service manager (systemctl); files: read from unit "
            "files only (systemd not PID 1, a unit file not loaded, or a root given).",
        ),
    ],
    examples=(
        "SELECT unit, active, sub FROM services() WHERE type = 'service' AND active = 'failed'",
        "SELECT unit, exec_start, path FROM services() WHERE enabled = 'enabled' "
        "AND path LIKE '/etc/%'",
        "SELECT unit, exec_start FROM services('/mnt/image') WHERE enabled = 'enabled'",
    ),
)
def services(
    ctx: QueryContext, source: str | None = None, root: str | None = None
) -> Iterator[dict[str, Any]]:
    if source not in (None, "systemd", "files"):
        return  # WHERE source = 'other' matches no row
    root_path = Path(root) if root else Path("/")
    if root and not root_path.is_dir():
        return
    files = index_unit_files(ctx, root_path)
    live = None
    if source != "files" and systemd_running(root_path) and shutil.which("systemctl"):
        live = _live_units(ctx)
        if live is None:
            ctx.warn("services(): systemctl failed; showing what the unit files say")
    if live is not None:
        units, states = live
        loaded = set()
        for unit in ctx.checked(units):
            name = str(unit.get("unit", ""))
            loaded.add(name)
            found = files.get(name) or files.get(_template_of(name) or "")
            yield _row(
                name,
                found,
                states.get(name) or states.get(_template_of(name) or ""),
                unit,
                "systemd",
            )
        if source == "systemd":
            return
        for name, found in ctx.checked(files.items()):
            if name not in loaded:
                yield _row(name, found, states.get(name), None, "files")
        return
    if source == "systemd":
        return
    enabled = _enabled_links(root_path)
    for name, found in ctx.checked(files.items()):
        state = found.install_state()
        if state in ("disabled", "indirect") and name in enabled:
            state = enabled[name]
        yield _row(name, found, state, None, "files")


def _row(
    name: str,
    found: UnitFile | None,
    state: str | None,
    live: dict[str, Any] | None,
    source: str,
) -> dict[str, Any]:
    description = live.get("description") if live else None
    if not description and found is not None:
        description = found.first("Unit", "Description")
    return {
        "unit": name,
        "type": name.rpartition(".")[2] or None,
        "load": live.get("load") if live else None,
        "active": live.get("active") if live else None,
        "sub": live.get("sub") if live else None,
        "description": description or None,
        "enabled": state,
        "path": str(found.path) if found else None,
        "link_target": found.link_target if found else None,
        "dropins": [str(p) for p in found.dropins] if found else [],
        "exec_start": Lazy(found.exec_start) if found else None,
        "user": Lazy(found.user) if found else None,
        "source": source,
    }


# --------------------------------------------------------------------------------- packages

_DPKG_STATUS = "/var/lib/dpkg/status"
_RPM_FIELDS = (
    "%{NAME}",
    "%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}",
    "%{ARCH}",
    "%{SIZE}",
    "%{PACKAGER}",
    "%{SUMMARY}",
    "%{SOURCERPM}",
    "%{INSTALLTIME}",
)
RPM_QUERYFORMAT = "\\t".join(_RPM_FIELDS) + "\\n"


def parse_dpkg_status(ctx: QueryContext, lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Stanzas of a dpkg status file as field -> value (continuation lines joined by newlines)."""
    stanza: dict[str, str] = {}
    key: str | None = None
    for n, line in enumerate(lines):
        if n % 1024 == 0:
            ctx.check()
        line = line.rstrip("\n")
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                stanza[key] += "\n" + line[1:]
        elif ":" in line:
            key, value = line.split(":", 1)
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def _dpkg_install_time(info_dir: Path, name: str, arch: str | None) -> float | None:
    """When dpkg last unpacked the package: the time of its file list in dpkg's info dir."""
    for candidate in (f"{name}:{arch}.list", f"{name}.list"):
        try:
            return (info_dir / candidate).stat().st_mtime
        except OSError:
            continue
    return None


def _dpkg_packages(ctx: QueryContext, path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    info_dir = path.parent / "info"
    with open(path, encoding="utf-8", errors="replace") as fh:
        for stanza in parse_dpkg_status(ctx, fh):
            name = stanza.get("Package")
            if not name:
                continue
            size = stanza.get("Installed-Size", "")
            arch = stanza.get("Architecture")
            description = stanza.get("Description", "")
            yield {
                "name": name,
                "version": stanza.get("Version"),
                "architecture": arch,
                "status": stanza.get("Status"),
                "size": int(size) * 1024 if size.isdigit() else None,
                "maintainer": stanza.get("Maintainer"),
                "summary": description.split("\n", 1)[0] or None,
                "source_package": (stanza.get("Source") or name).split(" ", 1)[0],
                "section": stanza.get("Section"),
                "install_time": Lazy(_dpkg_install_time, info_dir, name, arch),
                "source": "dpkg",
            }


def parse_rpm_line(line: str) -> dict[str, Any] | None:
    """One line of ``rpm -qa --queryformat RPM_QUERYFORMAT``."""
    fields = line.rstrip("\n").split("\t")
    if len(fields) != len(_RPM_FIELDS) or not fields[0]:
        return None

    def value(text: str) -> str | None:
        return None if text in ("", "(none)") else text

    size, installed = value(fields[3]), value(fields[7])
    return {
        "name": fields[0],
        "version": value(fields[1]),
        "architecture": value(fields[2]),
        "status": "installed",
        "size": int(size) if size and size.isdigit() else None,
        "maintainer": value(fields[4]),
        "summary": value(fields[5]),
        "source_package": value(fields[6]),
        "section": None,
        "install_time": float(installed) if installed and installed.isdigit() else None,
        "source": "rpm",
    }


def _rpm_packages(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    if not Path("/var/lib/rpm").is_dir() or shutil.which("rpm") is None:
        return
    out = _run(ctx, ["rpm", "-qa", "--queryformat", RPM_QUERYFORMAT])
    if out is None:
        ctx.warn("packages(): rpm -qa failed; rpm packages are left out")
        return
    for line in ctx.checked(out.splitlines()):
        row = parse_rpm_line(line)
        if row is not None:
            yield row


@table(
    name="packages",
    description="Installed software packages from dpkg (Debian, Ubuntu) and rpm (RHEL, SUSE).",
    platforms=("linux",),
    arguments=[
        Arg(
            "path",
            "TEXT",
            "Read this dpkg status file (e.g. from a disk image) instead of the live package "
            "databases; rpm is then not asked.",
        ),
    ],
    columns=[
        Col("name", "TEXT", "Package name."),
        Col("version", "TEXT", "Version (rpm: [epoch:]version-release)."),
        Col("architecture", "TEXT", "amd64, all, x86_64, noarch ..."),
        Col("status", "TEXT", "dpkg: 'install ok installed', 'deinstall ok config-files' ..."),
        Col("size", "INTEGER", "Installed size, bytes (dpkg gives KiB: multiplied by 1024)."),
        Col("maintainer", "TEXT", "Maintainer (dpkg) or packager (rpm)."),
        Col("summary", "TEXT", "One-line description."),
        Col("source_package", "TEXT", "Source package it was built from."),
        Col("section", "TEXT", "Archive section (dpkg)."),
        Col(
            "install_time",
            "REAL",
            "When it was installed or last upgraded, seconds since the epoch.",
            expensive=True,
        ),
        Col("source", "TEXT", "Package manager: dpkg or rpm."),
    ],
    examples=(
        "SELECT name, version FROM packages() WHERE name LIKE 'openssl%'",
        "SELECT name, status FROM packages() WHERE status != 'install ok installed'",
        "SELECT name, version FROM packages('/mnt/image/var/lib/dpkg/status')",
    ),
)
def packages(ctx: QueryContext, path: str | None = None) -> Iterator[dict[str, Any]]:
    if path:
        yield from _dpkg_packages(ctx, Path(path))
        return
    yield from _dpkg_packages(ctx, Path(_DPKG_STATUS))
    yield from _rpm_packages(ctx)


@hookimpl
def register_query_plugins() -> Iterable[Plugin]:
    return [kernel_modules, services, packages]
