"""The artifact format: a named, documented, typed YAML package of queries.

The structure is declared with msgspec so unknown fields and wrong types are refused with the
path of the offending value; :mod:`peregrine.artifacts.loader` turns that path into a file line.
Rules that a schema cannot express (names, unique sources, known parameter types) live in
:func:`semantic_errors`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from peregrine.artifacts.parameters import PARAMETER_TYPES
from peregrine.engine.context import KNOWN_PERMISSIONS

ArtifactType = Literal["CLIENT", "CLIENT_EVENT", "SERVER", "SERVER_EVENT"]

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COLUMN_TYPES = frozenset({"string", "int", "float", "bool", "timestamp", "json", "bytes", "hex"})


class Parameter(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A value the analyst may set; bound into every source's SQL as ``:name``."""

    name: str
    type: str = "string"
    default: Any = None
    description: str = ""
    choices: list[str] | None = None
    required: bool = False


class Source(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One query of an artifact; each source gives its own result set."""

    query: str
    name: str = ""
    description: str = ""
    precondition: str | None = None


class Resources(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Limits for a collection of this artifact (None: the collector's default)."""

    timeout: float | None = None
    max_rows: int | None = None
    max_upload_bytes: int | None = None
    cpu_limit: float | None = None


class Artifact(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    sources: list[Source]
    description: str = ""
    author: str = ""
    reference: list[str] = []
    type: ArtifactType = "CLIENT"
    precondition: str | None = None
    parameters: list[Parameter] = []
    resources: Resources = msgspec.field(default_factory=Resources)
    required_permissions: list[str] = []
    column_types: dict[str, str] = {}
    #: Where it came from (file path, ``builtin:...`` or ``forensicartifacts:...``); not in YAML.
    origin: str = ""

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().split("\n", 1)[0] if self.description else ""


def semantic_errors(artifact: Artifact) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems a schema cannot see, each as (path in the document, message)."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if not NAME_RE.match(artifact.name):
        errors.append(
            (("name",), f"name {artifact.name!r} must be dotted words, e.g. Linux.Sys.Users")
        )
    if not artifact.sources:
        errors.append((("sources",), "an artifact needs at least one source"))
    seen: set[str] = set()
    for i, source in enumerate(artifact.sources):
        if source.name in seen:
            errors.append((("sources", i, "name"), f"two sources are named {source.name!r}"))
        seen.add(source.name)
        if len(artifact.sources) > 1 and not source.name:
            errors.append((("sources", i), "when there are several sources, each needs a name"))
    names: set[str] = set()
    for i, param in enumerate(artifact.parameters):
        where: tuple[str | int, ...] = ("parameters", i)
        if not PARAM_NAME_RE.match(param.name):
            errors.append(((*where, "name"), f"parameter name {param.name!r} is not a word"))
        if param.name in names:
            errors.append(((*where, "name"), f"two parameters are named {param.name!r}"))
        names.add(param.name)
        if param.type not in PARAMETER_TYPES:
            known = ", ".join(sorted(PARAMETER_TYPES))
            errors.append(((*where, "type"), f"unknown parameter type {param.type!r}: {known}"))
        elif param.type in ("choices", "multichoice") and not param.choices:
            errors.append((where, f"a {param.type} parameter needs a list of choices"))
    for i, perm in enumerate(artifact.required_permissions):
        if perm not in KNOWN_PERMISSIONS:
            known = ", ".join(sorted(KNOWN_PERMISSIONS))
            errors.append((("required_permissions", i), f"unknown permission {perm!r}: {known}"))
    for column, kind in artifact.column_types.items():
        if kind not in COLUMN_TYPES:
            known = ", ".join(sorted(COLUMN_TYPES))
            errors.append((("column_types", column), f"unknown column type {kind!r}: {known}"))
    return errors
