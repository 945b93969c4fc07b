"""Read artifact YAML and check everything up front, naming the file and line of each problem.

Checks, in order: YAML syntax; the schema (unknown fields, wrong types, via msgspec); rules the
schema cannot express (:func:`~peregrine.artifacts.model.semantic_errors`); and, once every
artifact is known, that each query compiles against the registered plugins and other artifacts
(:meth:`ArtifactRepository.check`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from peregrine.artifacts.model import Artifact, semantic_errors

DocPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """Something wrong with an artifact definition, located in its file."""

    origin: str
    line: int | None
    message: str
    artifact: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.origin}:{self.line}" if self.line else self.origin
        about = f" [{self.artifact}]" if self.artifact else ""
        return f"{where}:{about} {self.severity}: {self.message}"


class ArtifactError(Exception):
    """An artifact could not be loaded or run; ``problems`` lists why."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def _line_map(node: yaml.Node, path: DocPath, lines: dict[DocPath, int]) -> None:
    """Record the 1-based line of every value in a composed YAML document."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                _line_map(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), lines)


_PATH_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]|\[\.\.\.\]")


def parse_error_path(message: str) -> DocPath:
    """The document path in a msgspec error: '... - at `$.sources[0].query`'."""
    match = re.search(r"at `\$([^`]*)`", message)
    if not match:
        return ()
    parts: list[str | int] = []
    for key, index in _PATH_PART.findall(match.group(1)):
        parts.append(int(index) if index else key)
    return tuple(parts)


def line_of(lines: dict[DocPath, int], path: DocPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


@dataclass(frozen=True)
class Definition:
    """A parsed artifact and the line of every value in its YAML, for later checks (SQL)."""

    artifact: Artifact
    lines: dict[DocPath, int]

    def line(self, *path: str | int) -> int | None:
        return line_of(self.lines, path)


def parse_artifacts(text: str, origin: str) -> tuple[list[Definition], list[Problem]]:
    """Every artifact in a YAML text (documents separated by ``---``) and what is wrong."""
    artifacts: list[Definition] = []
    problems: list[Problem] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [Problem(origin, line, f"YAML syntax: {problem}")]
    for node, data in zip(nodes, documents, strict=True):
        if data is None:
            continue
        lines: dict[DocPath, int] = {}
        _line_map(node, (), lines)
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(data, dict):
            problems.append(Problem(origin, lines.get(()), "an artifact must be a mapping"))
            continue
        if "origin" in data:
            problems.append(Problem(origin, line_of(lines, ("origin",)), "unknown field 'origin'"))
            continue
        data = _normalise(data)
        try:
            artifact = msgspec.convert(data, Artifact, strict=False)
        except msgspec.ValidationError as exc:
            message = str(exc)
            line = line_of(lines, parse_error_path(message))
            problems.append(Problem(origin, line, _readable(message), name))
            continue
        artifact = msgspec.structs.replace(artifact, origin=origin)
        for path, message in semantic_errors(artifact):
            problems.append(Problem(origin, line_of(lines, path), message, artifact.name))
        artifacts.append(Definition(artifact, lines))
    return artifacts, problems


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Forgive the shapes authors write by hand: a single reference as text."""
    if isinstance(data.get("reference"), str):
        data = {**data, "reference": [data["reference"]]}
    return data


def _readable(message: str) -> str:
    message = message.replace("Object contains unknown field", "unknown field")
    return re.sub(r" - at `\$[^`]*`", "", message)


def builtin_files() -> Iterator[tuple[str, str]]:
    """(origin, text) of every YAML file in the built-in library, in a stable order."""
    library = resources.files("peregrine.artifacts") / "library"
    for entry in sorted(library.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            yield f"builtin:{entry.name}", entry.read_text(encoding="utf-8")


def directory_files(directory: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(directory.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            yield str(path), path.read_text(encoding="utf-8", errors="replace")
