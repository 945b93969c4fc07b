"""ForensicArtifacts: every definition of the ``artifacts`` package, as Peregrine artifacts.

The definitions are read with the package's own reader and registry (its validation applies),
never copied into this repository: upgrading the pinned package upgrades them. Each becomes
``ForensicArtifacts.<Name>`` with one source per FA source:

* FILE, PATH, DIRECTORY: the FA paths are a JSON parameter (``<source>_paths``), expanded by
  ``kb_expand`` (knowledge-base variables, ``**N`` depths) and walked by ``glob``. FILE returns
  files and links with their SHA-256 (computed only when read) and, with ``upload = true``, a copy
  in the collection; PATH describes the paths themselves; DIRECTORY lists their entries.
* COMMAND: ``execve`` of the FA argument vector (a parameter, ``<source>_argv``), only if
  ``which`` finds the program, so a tool that is not installed gives no rows. Needs EXECVE.
* ARTIFACT_GROUP: one source per source of each member, ``SELECT * FROM "ForensicArtifacts.
  Member/source"()``, so members run with their own preconditions and parameters.
* REGISTRY_KEY, REGISTRY_VALUE, WMI: ``windows_only``, which fails saying so when run.

``supported_os`` becomes a precondition on ``info().os``, for the artifact and for a source that
narrows it, so a collection skips what does not apply here instead of failing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from artifacts import definitions as fa_definitions  # type: ignore[import-untyped]
from artifacts.reader import YamlArtifactsReader  # type: ignore[import-untyped]
from artifacts.registry import ArtifactDefinitionsRegistry  # type: ignore[import-untyped]

from peregrine.artifacts.model import Artifact, Parameter, Source

PREFIX = "ForensicArtifacts."

#: FA ``supported_os`` -> the ``os`` column of ``info()``. ESXi, Android and iOS never match:
#: Peregrine does not run there.
OS_NAMES = {
    "Linux": "linux",
    "Darwin": "darwin",
    "Windows": "windows",
    "ESXi": "esxi",
    "Android": "android",
    "iOS": "ios",
}

FILE_COLUMNS = (
    "g.path, g.type, g.size, g.mode, g.uid, g.gid, g.owner, g.group_name, g.atime, g.mtime, "
    "g.ctime, g.btime, g.link_target"
)
COLUMN_TYPES = {
    "size": "int",
    "uid": "int",
    "gid": "int",
    "atime": "timestamp",
    "mtime": "timestamp",
    "ctime": "timestamp",
    "btime": "timestamp",
    "return_code": "int",
    "duration": "float",
}

UPLOAD = Parameter(
    name="upload",
    type="bool",
    default=False,
    description="Also copy every file found into the collection (column uploaded).",
)

_WINDOWS_SOURCES = {
    fa_definitions.TYPE_INDICATOR_WINDOWS_REGISTRY_KEY: "keys",
    fa_definitions.TYPE_INDICATOR_WINDOWS_REGISTRY_VALUE: "key_value_pairs",
    fa_definitions.TYPE_INDICATOR_WMI_QUERY: "query",
}
_PATH_SOURCES = (
    fa_definitions.TYPE_INDICATOR_FILE,
    fa_definitions.TYPE_INDICATOR_PATH,
    fa_definitions.TYPE_INDICATOR_DIRECTORY,
)


def data_directory() -> Path:
    """Where the ``artifacts`` package keeps its YAML definitions."""
    return Path(fa_definitions.__file__).parent / "data"


@functools.cache
def package_version() -> str:
    """The ``artifacts`` package's version (looked up once: it is stamped on 731 definitions)."""
    return metadata.version("artifacts")


def sql_string(value: str) -> str:
    """An SQL string literal (only for fixed vocabulary such as OS names and separators;
    FA paths and commands are bound as parameters)."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def os_precondition(supported_os: Iterable[str]) -> str | None:
    names = sorted({OS_NAMES.get(o, o.lower()) for o in supported_os})
    if not names:
        return None
    return f"SELECT 1 FROM info() WHERE os IN ({', '.join(map(sql_string, names))})"


@dataclass
class FaDefinition:
    """One FA definition with the YAML file it came from."""

    definition: Any
    filename: str


def read_definitions() -> tuple[list[FaDefinition], Any]:
    """Every definition of the package, validated by its registry (duplicates are refused)."""
    reader = YamlArtifactsReader()
    registry = ArtifactDefinitionsRegistry()
    found: list[FaDefinition] = []
    for path in sorted(data_directory().glob("*.yaml")):
        for definition in reader.ReadFile(str(path)):
            registry.RegisterDefinition(definition)
            found.append(FaDefinition(definition, path.name))
    return found, registry


# --- one FA source -> Peregrine sources ----------------------------------------------------------


@dataclass
class Converted:
    """What one FA definition becomes, before group members are linked."""

    artifact: Artifact
    #: FA sources that are groups: (index, member names, supported_os of that source).
    groups: list[tuple[int, list[str], list[str]]] = field(default_factory=list)
    permissions: set[str] = field(default_factory=set)
    #: FA ``supported_os`` of the definition (empty: any).
    supported_os: list[str] = field(default_factory=list)


def _path_query(kind: str, parameter: str, separator: str) -> str:
    sep = sql_string(separator or "/")
    patterns = (
        "WITH patterns AS (\n"
        f"  SELECT k.path, k.max_depth FROM json_each(:{parameter}) p\n"
        f"  JOIN kb_expand(p.value, {sep}) k\n"
        "), walks AS (\n"
        "  SELECT max_depth, json_group_array(DISTINCT path) AS patterns\n"
        "  FROM patterns GROUP BY max_depth\n"
        ")\n"
    )
    if kind == fa_definitions.TYPE_INDICATOR_FILE:
        return (
            patterns + f"SELECT {FILE_COLUMNS}, g.sha256,\n"
            "       CASE WHEN :upload THEN upload(g.path) END AS uploaded\n"
            "FROM walks w JOIN glob(w.patterns, NULL, w.max_depth, 0, 0, 0) g\n"
            "WHERE g.type IN ('file', 'link')"
        )
    if kind == fa_definitions.TYPE_INDICATOR_PATH:
        return patterns + (
            f"SELECT {FILE_COLUMNS}\nFROM walks w JOIN glob(w.patterns, NULL, w.max_depth) g"
        )
    # DIRECTORY: the entries of each directory the paths name.
    return (
        patterns.replace(
            "json_group_array(DISTINCT path)", "json_group_array(DISTINCT path || '/*')"
        )
        + f"SELECT {FILE_COLUMNS}\nFROM walks w JOIN glob(w.patterns, NULL, w.max_depth) g"
    )


def _describe_paths(kind: str, paths: list[str]) -> str:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return f"{kind}: {shown}"


def convert(fa: FaDefinition) -> Converted:
    """An FA definition as a Peregrine artifact (group sources are filled in by :func:`link`)."""
    definition = fa.definition
    name = PREFIX + definition.name
    urls = list(definition.urls or [])
    description = (definition.description or "").strip()
    if urls:
        description += "\n\nSee: " + "\n".join(urls)
    aliases = list(definition.aliases or [])
    if aliases:
        description += "\n\nAlso known as: " + ", ".join(aliases)
    artifact_os = list(definition.supported_os or [])
    artifact = Artifact(
        name=name,
        sources=[],
        description=description,
        author=f"ForensicArtifacts.com (artifacts {package_version()})",
        reference=urls,
        precondition=os_precondition(artifact_os),
        parameters=[],
        column_types=dict(COLUMN_TYPES),
        origin=f"forensicartifacts:{fa.filename}",
    )
    converted = Converted(artifact, supported_os=artifact_os)
    uses_upload = False
    for index, source in enumerate(definition.sources):
        kind = source.type_indicator
        source_os = list(source.supported_os or [])
        precondition = (
            os_precondition(source_os) if source_os and set(source_os) != set(artifact_os) else None
        )
        source_name = f"{kind.lower()}_{index}"
        if kind in _PATH_SOURCES:
            parameter = f"{source_name}_paths"
            paths = [str(p) for p in source.paths or []]
            artifact.parameters.append(
                Parameter(
                    name=parameter,
                    type="json",
                    default=paths,
                    description=f"{kind} paths of source {source_name}, in ForensicArtifacts "
                    "syntax (%%users.homedir%%, **N), as a JSON array.",
                )
            )
            artifact.sources.append(
                Source(
                    query=_path_query(kind, parameter, source.separator),
                    name=source_name,
                    description=_describe_paths(kind, paths),
                    precondition=precondition,
                )
            )
            converted.permissions.add("FILESYSTEM_READ")
            uses_upload = uses_upload or kind == fa_definitions.TYPE_INDICATOR_FILE
        elif kind == fa_definitions.TYPE_INDICATOR_COMMAND:
            parameter = f"{source_name}_argv"
            argv = [str(source.cmd), *(str(a) for a in source.args or [])]
            artifact.parameters.append(
                Parameter(
                    name=parameter,
                    type="json",
                    default=argv,
                    description=f"Program and arguments of source {source_name} (JSON array).",
                )
            )
            artifact.sources.append(
                Source(
                    query=(
                        "SELECT e.stdout, e.stderr, e.return_code, e.duration, e.truncated, "
                        "e.timed_out\n"
                        f"FROM which(json_extract(:{parameter}, '$[0]')) w\n"
                        f"CROSS JOIN execve(:{parameter}) e"
                    ),
                    name=source_name,
                    description=f"COMMAND: {' '.join(argv)} (skipped when not installed)",
                    precondition=precondition,
                )
            )
            converted.permissions |= {"EXECVE", "FILESYSTEM_READ"}
        elif kind in _WINDOWS_SOURCES:
            attribute = _WINDOWS_SOURCES[kind]
            parameter = f"{source_name}_{attribute}"
            value: Any = getattr(source, attribute)
            if kind == fa_definitions.TYPE_INDICATOR_WMI_QUERY:
                value = {"query": source.query, "base_object": source.base_object}
            artifact.parameters.append(
                Parameter(
                    name=parameter,
                    type="json",
                    default=value,
                    description=f"{kind} attributes of source {source_name} (Windows only).",
                )
            )
            artifact.sources.append(
                Source(
                    query=f"SELECT * FROM windows_only({sql_string(kind)}, :{parameter})",
                    name=source_name,
                    description=f"{kind}: Windows only; Peregrine does not collect it yet",
                    precondition=precondition
                    or (None if artifact_os == ["Windows"] else os_precondition(["Windows"])),
                )
            )
        elif kind == fa_definitions.TYPE_INDICATOR_ARTIFACT_GROUP:
            converted.groups.append((index, [str(n) for n in source.names or []], source_os))
        else:  # a source type newer than this converter: say so when it runs
            artifact.sources.append(
                Source(
                    query=f"SELECT * FROM windows_only({sql_string(kind)})",
                    name=source_name,
                    description=f"{kind}: not supported by Peregrine",
                    precondition=precondition,
                )
            )
    if uses_upload:
        artifact.parameters.append(UPLOAD)
    return converted


def link(converted: dict[str, Converted]) -> list[str]:
    """Give group artifacts one source per source of each member; return missing members."""
    missing: list[str] = []
    by_name = {c.artifact.name: c for c in converted.values()}

    def permissions(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        item = by_name.get(name)
        if item is None or name in seen:
            return set()
        found = set(item.permissions)
        for _, members, _ in item.groups:
            for member in members:
                found |= permissions(PREFIX + member, seen | {name})
        return found

    # Members first, so a group of groups sees its members' final sources.
    done: set[str] = set()

    def resolve(item: Converted, stack: tuple[str, ...] = ()) -> None:
        name = item.artifact.name
        if name in done or name in stack:
            return
        for _, members, _ in item.groups:
            for member in members:
                target = by_name.get(PREFIX + member)
                if target is not None:
                    resolve(target, (*stack, name))
        _link_one(item, by_name, missing)
        done.add(name)

    for item in converted.values():
        resolve(item)
    for item in converted.values():
        item.artifact.required_permissions = sorted(permissions(item.artifact.name))
    return missing


def _members(by_name: dict[str, Converted], names: Iterable[str]) -> list[Converted]:
    return [by_name[PREFIX + n] for n in names if PREFIX + n in by_name]


def _pass_upload(member: Artifact) -> str:
    """Arguments for a member's table: the group's ``:upload`` in the position of the member's
    ``upload`` parameter (a table's arguments are its artifact's parameters, in order)."""
    names = [p.name for p in member.parameters]
    if "upload" not in names:
        return ""
    upto = names[: names.index("upload") + 1]
    return ", ".join(":upload" if n == "upload" else "NULL" for n in upto)


def _link_one(item: Converted, by_name: dict[str, Converted], missing: list[str]) -> None:
    artifact = item.artifact
    artifact_os = set(item.supported_os)
    # A member may be listed by several group sources (per OS): one source, all their OSes.
    members: dict[str, set[str] | None] = {}
    for _, names, source_os in item.groups:
        for member in names:
            oses: set[str] | None = set(source_os) if source_os else None
            if member in members:
                earlier = members[member]
                members[member] = None if earlier is None or oses is None else earlier | oses
            else:
                members[member] = oses
    taken = {s.name for s in artifact.sources}
    notes: list[str] = []
    for member, oses in members.items():
        target = by_name.get(PREFIX + member)
        if target is None:
            missing.append(f"{artifact.name} -> {member}")
            notes.append(member)
            continue
        precondition = os_precondition(oses) if oses and oses != artifact_os else None
        for source in target.artifact.sources:
            source_name = member if len(target.artifact.sources) == 1 else f"{member}_{source.name}"
            while source_name in taken:
                source_name += "_"
            taken.add(source_name)
            reference = sql_identifier(f"{target.artifact.name}/{source.name}")
            artifact.sources.append(
                Source(
                    query=f"SELECT * FROM {reference}({_pass_upload(target.artifact)})",
                    name=source_name,
                    description=f"{source.description} (from {target.artifact.name})".strip(),
                    precondition=precondition,
                )
            )
    has_upload = artifact.parameter("upload") is not None
    if not has_upload and any(t.artifact.parameter("upload") for t in _members(by_name, members)):
        artifact.parameters.append(UPLOAD)
    if notes:
        missing_list = ", ".join(notes)
        artifact.description += f"\n\nMembers not defined in this release (skipped): {missing_list}"
    if not artifact.sources:
        artifact.sources.append(
            Source(
                query="SELECT NULL AS nothing WHERE 0",
                name="empty_group",
                description="Every member of this group is missing from this release.",
            )
        )


@dataclass
class ForensicCatalog:
    """The converted artifacts and what the conversion noticed."""

    artifacts: list[Artifact]
    definitions: int
    missing_members: list[str]
    aliases: dict[str, str]


@functools.cache
def catalog() -> ForensicCatalog:
    found, registry = read_definitions()
    converted = {fa.definition.name: convert(fa) for fa in found}
    missing = link(converted)
    aliases = {alias: fa.definition.name for fa in found for alias in fa.definition.aliases or []}
    return ForensicCatalog(
        artifacts=[c.artifact for c in converted.values()],
        definitions=sum(1 for _ in registry.GetDefinitions()),
        missing_members=missing,
        aliases=aliases,
    )


def forensic_artifacts() -> list[Artifact]:
    """Every ForensicArtifacts definition as a Peregrine artifact (read once per process)."""
    return catalog().artifacts
