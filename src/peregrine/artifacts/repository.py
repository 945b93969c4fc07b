"""The artifacts known to this process: built-in, from configured directories, ForensicArtifacts.

A later definition with the name of an earlier one replaces it *and is reported* (a warning
naming both files), so customising a built-in artifact is possible but never silent.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from peregrine.artifacts.composition import ArtifactTables
from peregrine.artifacts.event_check import event_problem
from peregrine.artifacts.loader import (
    ArtifactError,
    Definition,
    Problem,
    builtin_files,
    directory_files,
    parse_artifacts,
)
from peregrine.artifacts.model import Artifact
from peregrine.engine.errors import QueryError
from peregrine.engine.registry import Registry

if TYPE_CHECKING:
    from peregrine.engine.executor import Engine


def configured_directories(extra: Iterable[Path] = ()) -> list[Path]:
    """Artifact directories from ``$PEREGRINE_ARTIFACT_DIRS`` (``os.pathsep``-separated),
    then ``extra``: the CLI and the server read the same ones."""
    configured = os.environ.get("PEREGRINE_ARTIFACT_DIRS", "")
    return [Path(d) for d in configured.split(os.pathsep) if d] + list(extra)


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def search_words(text: str) -> set[str]:
    """Lower-cased words, splitting CamelCase and dotted names (``WindowsShell`` → windows,
    shell; ``Linux.Ssh.AuthorizedKeys`` → linux, ssh, authorized, keys)."""
    return {word.lower() for word in _WORD.findall(text)}


class ArtifactRepository:
    """Artifacts by name, and the plugins their queries run with in this process.

    Give ``engine`` (default: one with every plugin) or only ``registry``: with a registry, the
    engine (which loads SQLite) is made on first use, which never comes in a process that runs
    every query in a worker (the agent).
    """

    def __init__(self, engine: Engine | None = None, *, registry: Registry | None = None) -> None:
        if registry is None:
            if engine is None:
                from peregrine.engine.executor import Engine

                engine = Engine()
            registry = engine.registry
        elif engine is not None:
            raise TypeError("give an engine or a registry, not both")
        self._engine = engine
        self.registry = registry
        self._definitions: dict[str, Definition] = {}
        self.problems: list[Problem] = []

    @property
    def engine(self) -> Engine:
        """An engine over :attr:`registry` (the plugins of local queries)."""
        if self._engine is None:
            from peregrine.engine.executor import Engine

            self._engine = Engine(self.registry)
        return self._engine

    @classmethod
    def default(cls, directories: Iterable[Path] = (), forensic: bool = True) -> ArtifactRepository:
        """Built-in artifacts, then ForensicArtifacts, then each configured directory."""
        repo = cls()
        repo.load_texts(builtin_files())
        if forensic:
            from peregrine.artifacts.forensic import forensic_artifacts

            for artifact in forensic_artifacts():
                repo.add(Definition(artifact, {}))
        for directory in directories:
            repo.load_directory(directory)
        return repo

    # -- loading ------------------------------------------------------------------------------

    def load_texts(self, files: Iterable[tuple[str, str]]) -> list[Definition]:
        loaded: list[Definition] = []
        for origin, text in files:
            definitions, problems = parse_artifacts(text, origin)
            self.problems += problems
            for definition in definitions:
                if not any(p.artifact == definition.artifact.name for p in problems):
                    self.add(definition)
                    loaded.append(definition)
        return loaded

    def load_directory(self, directory: Path) -> list[Definition]:
        if not directory.is_dir():
            self.problems.append(Problem(str(directory), None, "not a directory"))
            return []
        return self.load_texts(directory_files(directory))

    def load_file(self, path: Path) -> list[Definition]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.problems.append(Problem(str(path), None, f"cannot read: {exc.strerror}"))
            return []
        return self.load_texts([(str(path), text)])

    def add(self, definition: Definition) -> None:
        name = definition.artifact.name
        earlier = self._definitions.get(name)
        if earlier is not None:
            self.problems.append(
                Problem(
                    definition.artifact.origin,
                    definition.line("name"),
                    f"{name} is also defined in {earlier.artifact.origin}; this later "
                    "definition replaces it",
                    name,
                    severity="warning",
                )
            )
        self._definitions[name] = definition

    # -- lookup -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Artifact]:
        return iter(sorted((d.artifact for d in self._definitions.values()), key=lambda a: a.name))

    def __len__(self) -> int:
        return len(self._definitions)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def find(self, name: str) -> Artifact | None:
        definition = self._definitions.get(name)
        return definition.artifact if definition else None

    def get(self, name: str) -> Artifact:
        artifact = self.find(name)
        if artifact is None:
            close = difflib.get_close_matches(name, list(self._definitions), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ArtifactError(
                f"unknown artifact {name!r}{hint} (`peregrine artifacts list` lists them)"
            )
        return artifact

    def search(self, text: str) -> list[Artifact]:
        """Artifacts where every word of ``text`` starts a word of the name or description
        (``ssh`` finds ``Linux.Ssh.*`` and "sshd", not ``WindowsShell``), best first: a word
        of the name before a word of the description."""
        terms = search_words(text)
        scored: list[tuple[int, str, Artifact]] = []
        for artifact in self:
            in_name = search_words(artifact.name)
            in_text = search_words(artifact.description)
            score = 0
            for term in terms:
                if term in in_name:
                    score += 3
                elif any(w.startswith(term) for w in in_name):
                    score += 2
                elif any(w.startswith(term) for w in in_text):
                    score += 1
                else:
                    break
            else:
                scored.append((-score, artifact.name, artifact))
        return [artifact for *_, artifact in sorted(scored, key=lambda s: s[:2])]

    def tables(self) -> ArtifactTables:
        """Artifact-as-table support for queries run against this repository."""
        return ArtifactTables(self.find, self.registry)

    # -- checking -----------------------------------------------------------------------------

    def check(self, names: Iterable[str] | None = None) -> list[Problem]:
        """Compile every query (sources and preconditions) of the named artifacts (or all)."""
        problems: list[Problem] = []
        tables = self.tables()
        selected = list(names) if names is not None else list(self._definitions)
        for name in selected:
            definition = self._definitions[name]
            artifact = definition.artifact
            queries: list[tuple[tuple[str | int, ...], str]] = []
            if artifact.precondition:
                queries.append((("precondition",), artifact.precondition))
            for i, source in enumerate(artifact.sources):
                queries.append((("sources", i, "query"), source.query))
                if source.precondition:
                    queries.append((("sources", i, "precondition"), source.precondition))
            declared = {p.name for p in artifact.parameters}
            for path, sql in queries:
                line = definition.line(*path)
                try:
                    parameters = compile_query(tables, sql)
                except QueryError as exc:
                    problems.append(Problem(artifact.origin, line, f"SQL: {exc}", name))
                    continue
                of_source = path[0] == "sources"
                ending = event_problem(artifact, sql, self.registry) if of_source else None
                if ending:
                    problems.append(Problem(artifact.origin, line, ending, name))
                undeclared = sorted(set(parameters) - declared)
                if undeclared:
                    problems.append(
                        Problem(
                            artifact.origin,
                            line,
                            "the query uses parameters that are not declared: "
                            + ", ".join(f":{p}" for p in undeclared),
                            name,
                        )
                    )
        return problems


def compile_query(tables: ArtifactTables, sql: str) -> list[str]:
    """Prepare ``sql`` against the plugins and artifacts; return its named parameters."""
    from peregrine.engine.executor import Engine

    return Engine(tables.registry_for(sql)).prepare(sql).parameters
