"""Run an artifact: check its parameters and permissions, evaluate preconditions, run sources.

This is the one place that turns an artifact into queries; the offline collector and (later) the
agent both use it. Each source runs as its own query, in a worker process by default, with the
artifact's resource limits, its parameters bound as ``:name``, and the artifacts it uses as tables
shipped to the worker with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from peregrine.artifacts.composition import ArtifactTables, dependencies
from peregrine.artifacts.loader import ArtifactError
from peregrine.artifacts.model import Artifact, Source
from peregrine.artifacts.parameters import ParameterError, bind_values
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.engine.columns import Column
from peregrine.engine.context import ALL_PERMISSIONS, QueryContext, QueryLimits, UploadSink
from peregrine.engine.denylist import Denylist
from peregrine.engine.errors import QueryCancelled, QueryError

if TYPE_CHECKING:
    from peregrine.engine.executor import QueryResult
    from peregrine.engine.spare import WorkerSource


class RunningQuery(Protocol):
    """What a started query offers, in this process or in a worker."""

    @property
    def columns(self) -> list[Column]: ...

    @property
    def truncated(self) -> bool: ...

    @property
    def warnings(self) -> list[str]: ...

    @property
    def warnings_dropped(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...

    def cancel(self) -> None: ...

    def __hash__(self) -> int: ...


@dataclass
class Planned:
    """An artifact with validated, converted parameter values and its effective limits."""

    artifact: Artifact
    values: dict[str, Any]
    limits: QueryLimits


@dataclass
class SourceOutcome:
    """How one source of a collection went; filled in as its rows stream."""

    artifact: str
    source: str
    status: str = "pending"  # running, finished, skipped, error
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    error: str | None = None
    #: What the query skipped; the last says how many more were dropped, if any were.
    warnings: list[str] = field(default_factory=list)
    warnings_dropped: int = 0
    truncated: bool = False
    elapsed: float = 0.0

    @property
    def warning_count(self) -> int:
        """Every warning the query gave, the dropped ones too."""
        summary = 1 if self.warnings_dropped else 0
        return len(self.warnings) - summary + self.warnings_dropped


class ArtifactRunner:
    def __init__(
        self,
        repository: ArtifactRepository,
        *,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        isolated: bool = True,
        isolated_preconditions: bool = False,
        denylist: Denylist | None = None,
        workers: WorkerSource | None = None,
    ) -> None:
        self.repository = repository
        #: Where isolated queries get their worker (warm spares on the agent); None: started.
        self.workers = workers
        self.permissions = permissions
        self.isolated = isolated
        self.isolated_preconditions = isolated_preconditions
        self.denylist = denylist
        self.cancelled = False
        self._running: set[RunningQuery] = set()
        self._preconditions: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}

    def cancel(self) -> None:
        """Stop every query this runner has running, and refuse to start new ones."""
        self.cancelled = True
        for query in list(self._running):
            query.cancel()

    def _track(self, query: RunningQuery) -> None:
        """Remember a running query for cancel(); a cancel that came while the query was
        starting (before it was remembered) stops it now."""
        self._running.add(query)
        if self.cancelled:
            query.cancel()

    def plan(
        self,
        name: str,
        given: Mapping[str, Any],
        overrides: QueryLimits | None = None,
        *,
        events: bool = False,
    ) -> Planned:
        """Everything that can be refused before anything runs: name, permissions, values.
        ``events``: plan a CLIENT_EVENT artifact (run continuously), which nothing else may."""
        artifact = self.repository.get(name)
        if events and artifact.type != "CLIENT_EVENT":
            raise ArtifactError(
                f"{name} is a {artifact.type} artifact, not an event artifact (CLIENT_EVENT): "
                "collect it instead"
            )
        if not events and artifact.type not in ("CLIENT", "SERVER"):
            raise ArtifactError(
                f"{name} is a {artifact.type} artifact: it watches events and cannot be "
                "collected once"
            )
        missing = [p for p in artifact.required_permissions if p not in self.permissions]
        if missing:
            raise ArtifactError(f"{name} needs the {', '.join(missing)} permission")
        try:
            values = bind_values(artifact.parameters, dict(given))
        except ParameterError as exc:
            raise ArtifactError(f"{name}: {exc}") from None
        resources = artifact.resources
        limits = QueryLimits(
            timeout=resources.timeout,
            max_rows=resources.max_rows,
            cpu_limit=resources.cpu_limit,
        )
        if overrides is not None:
            for key in ("timeout", "max_rows", "hard_timeout", "max_memory_mb", "cpu_limit"):
                value = getattr(overrides, key)
                if value is not None:
                    setattr(limits, key, value)
        return Planned(artifact, values, limits)

    def query(
        self,
        planned: Planned,
        sql: str,
        *,
        uploads: UploadSink | None = None,
        limits: QueryLimits | None = None,
    ) -> RunningQuery:
        """Start ``sql`` with the artifact's values bound, in a worker or in this process."""
        limits = limits or planned.limits
        used = planned.values  # every parameter is bound; a query uses the ones it names
        if self.isolated:
            from peregrine.engine.worker import IsolatedQuery

            return IsolatedQuery(
                sql,
                used,
                limits=limits,
                permissions=self.permissions,
                denylist=self.denylist,
                artifacts=dependencies(self.repository.find, sql),
                uploads=uploads,
                workers=self.workers,
            )
        ctx = QueryContext(limits=limits, permissions=self.permissions, uploads=uploads)
        return self._local(sql, used, ctx)

    def _local(self, sql: str, values: dict[str, Any], ctx: QueryContext) -> QueryResult:
        """Start ``sql`` in this process, with the repository's plugins and artifacts."""
        from peregrine.engine.executor import Engine

        tables = ArtifactTables(self.repository.find, self.repository.registry)
        return Engine(tables.registry_for(sql)).execute(sql, values, ctx=ctx)

    def precondition_holds(self, planned: Planned, sql: str | None) -> bool:
        """A precondition holds when its query returns at least one row.

        Preconditions are small checks (which OS, is a file there), asked again and again by
        the sources of one collection: they run in this process, and each answer is kept for
        the life of the runner, so skipping a hundred Windows sources costs one query.
        With ``isolated_preconditions`` (the agent) they run in a worker like the sources: the
        agent lives for months, and answering one in its own process would load every query
        plugin into it for good."""
        if not sql:
            return True
        key = (sql, tuple(sorted((k, repr(v)) for k, v in planned.values.items())))
        if key not in self._preconditions:
            quick = QueryLimits(timeout=planned.limits.timeout or 60, max_rows=1)
            if self.isolated_preconditions:
                result = self.query(planned, sql, limits=quick)
                self._track(result)
                try:
                    self._preconditions[key] = any(True for _ in result)
                finally:
                    self._running.discard(result)
            else:
                ctx = QueryContext(limits=quick, permissions=self.permissions)
                local = self._local(sql, planned.values, ctx)
                self._preconditions[key] = any(True for _ in local)
        return self._preconditions[key]

    def run_source(
        self,
        planned: Planned,
        source: Source,
        outcome: SourceOutcome,
        uploads: UploadSink | None = None,
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of one source; ``outcome`` says how it went once the iterator is exhausted.
        Errors end up in ``outcome`` (status ``error``), not raised: one failing source must
        not lose the others."""
        started = time.monotonic()
        outcome.status = "running"
        try:
            for condition in (planned.artifact.precondition, source.precondition):
                if not self.precondition_holds(planned, condition):
                    outcome.status = "skipped"
                    outcome.error = f"precondition not met: {' '.join((condition or '').split())}"
                    return
            if self.cancelled:
                outcome.status, outcome.error = "cancelled", "the collection was cancelled"
                return
            result = self.query(planned, source.query, uploads=uploads)
            self._track(result)
            try:
                outcome.columns = [c.name for c in result.columns]
                for row in result:
                    outcome.rows += 1
                    yield row
            finally:
                self._running.discard(result)
            outcome.truncated = result.truncated
            outcome.warnings = list(result.warnings)
            outcome.warnings_dropped = result.warnings_dropped
            outcome.status = "finished"
        except QueryCancelled:
            outcome.status, outcome.error = "cancelled", "the collection was cancelled"
        except QueryError as exc:
            outcome.status, outcome.error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            outcome.elapsed = time.monotonic() - started
