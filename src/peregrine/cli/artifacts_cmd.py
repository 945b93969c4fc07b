"""``peregrine artifacts``: list, show, check, collect and watch artifacts on this machine."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from peregrine.artifacts.loader import ArtifactError, Problem
from peregrine.artifacts.model import Artifact, Source
from peregrine.artifacts.repository import ArtifactRepository, configured_directories
from peregrine.artifacts.runner import ArtifactRunner, Planned, SourceOutcome
from peregrine.cli.output import print_table, yaml_text
from peregrine.engine.context import QueryLimits
from peregrine.engine.denylist import Denylist

app = typer.Typer(help="List, document, check, collect and watch artifacts.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DirsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--artifacts-dir",
        help="Also load artifacts from this directory (repeatable; also $PEREGRINE_ARTIFACT_DIRS).",
    ),
]


def _repository(dirs: list[Path] | None) -> ArtifactRepository:
    repo = ArtifactRepository.default(configured_directories(dirs or []))
    for problem in repo.problems:
        style = "yellow" if problem.severity == "warning" else "red"
        err.print(f"[{style}]{escape(str(problem))}[/{style}]", highlight=False)
    return repo


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]Error:[/bold red] {escape(message)}", highlight=False)
    return typer.Exit(1)


@app.command("list")
def list_artifacts(
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Only artifacts whose name or text has this."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    dirs: DirsOption = None,
) -> None:
    """List the artifacts: built-in, ForensicArtifacts and your directories."""
    repo = _repository(dirs)
    artifacts = repo.search(search) if search else list(repo)
    if as_json:
        rows = [
            {"name": a.name, "type": a.type, "summary": a.summary, "origin": a.origin}
            for a in artifacts
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    table_rows = [[a.name, a.type, a.summary] for a in artifacts]
    print_table(console, ["name", "type", "description"], table_rows, ids={"name"})
    console.print(f"[dim]{len(artifacts)} of {len(repo)} artifacts[/dim]")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Artifact name, e.g. Linux.Sys.Users.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    dirs: DirsOption = None,
) -> None:
    """Show an artifact's definition: description, parameters, sources."""
    repo = _repository(dirs)
    try:
        artifact = repo.get(name)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    data = msgspec.to_builtins(artifact)
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    origin = escape(artifact.origin)
    console.print(f"[bold]{escape(artifact.name)}[/bold] ({artifact.type})  [dim]{origin}[/dim]")
    console.print(artifact.description.strip(), highlight=False, markup=False)
    if artifact.parameters:
        table = Table("parameter", "type", "default", "description", title="Parameters")
        for p in artifact.parameters:
            default = "" if p.default is None else json.dumps(p.default)
            table.add_row(*(Text(cell) for cell in (p.name, p.type, default, p.description)))
        console.print(table)
    data.pop("description", None)
    data.pop("parameters", None)
    console.print(yaml_text(data), highlight=False, markup=False, soft_wrap=True)


@app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Artifact YAML files or directories.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check artifact files: YAML, fields, types, and that every query compiles.

    Problems are printed as FILE:LINE: [ARTIFACT] error: WHAT; the exit code is 1 if any.
    """
    repo = ArtifactRepository.default()
    base_problems = len(repo.problems)
    names: list[str] = []
    for path in files:
        loaded = repo.load_directory(path) if path.is_dir() else repo.load_file(path)
        names += [d.artifact.name for d in loaded]
    problems = repo.problems[base_problems:] + repo.check(names)
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        typer.echo(json.dumps([_problem_dict(p) for p in problems], indent=1))
    else:
        for problem in problems:
            style = "yellow" if problem.severity == "warning" else "red"
            console.print(f"[{style}]{escape(str(problem))}[/{style}]", highlight=False)
        verdict = "[green]OK[/green]" if not errors else f"[red]{len(errors)} error(s)[/red]"
        console.print(f"{len(names)} artifact(s) checked: {verdict}")
    if errors:
        raise typer.Exit(1)


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.origin,
        "line": problem.line,
        "artifact": problem.artifact,
        "severity": problem.severity,
        "message": problem.message,
    }


def parse_artifact_params(
    values: list[str], artifacts: list[Artifact]
) -> dict[str, dict[str, str]]:
    """``-p Param=value`` goes to every artifact that declares Param;
    ``-p Artifact.Name:Param=value`` to that one. A parameter nobody declares is a typo."""
    per_artifact: dict[str, dict[str, str]] = {a.name: {} for a in artifacts}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not Param=value", param_hint="--param")
        target, colon, param = key.rpartition(":")
        if colon and target not in per_artifact:
            raise ArtifactError(f"{target} is not being collected (in -p {item})")
        chosen = [a for a in artifacts if (not colon or a.name == target) and a.parameter(param)]
        if not chosen:
            raise ArtifactError(f"no artifact being collected has a parameter {param!r}")
        for artifact in chosen:
            per_artifact[artifact.name][param] = value
    return per_artifact


@app.command("collect")
def collect(
    names: Annotated[list[str], typer.Argument(help="Artifacts to collect.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Param=value for every artifact that has it, or Artifact.Name:Param=value.",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Archive to write (.zip).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Time-out per source, seconds (overrides the artifact).")
    ] = None,
    max_rows: Annotated[int | None, typer.Option(help="Rows per source at most.")] = None,
    in_process: Annotated[
        bool, typer.Option(help="Run queries in this process, without worker or watchdog.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
    dirs: DirsOption = None,
) -> None:
    """Collect artifacts on this machine into a collection archive (zip).

    The archive holds one JSONL result set per source, the uploaded files, a log and a
    manifest (host, times, parameters, row counts, SHA-256 of every file).
    """
    from peregrine.artifacts.offline import collect as collect_offline

    repo = _repository(dirs)
    runner = ArtifactRunner(repo, isolated=not in_process, denylist=Denylist())
    overrides = QueryLimits(timeout=timeout, max_rows=max_rows)
    try:
        params = parse_artifact_params(param or [], [repo.get(name) for name in names])
        plans = [runner.plan(name, params[name], overrides) for name in names]
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    if output is None:
        output = Path(f"collection-{time.strftime('%Y%m%dT%H%M%S')}.zip")
    progress = _Progress(plans)
    with Live(progress.table(), console=err, refresh_per_second=8, transient=as_json) as live:

        def observe(outcome: SourceOutcome) -> None:
            progress.update(outcome)
            live.update(progress.table())

        manifest = collect_offline(runner, plans, output, observe)
    if as_json:
        typer.echo(json.dumps(manifest, indent=1, default=str))
    failed = [s for a in manifest["artifacts"] for s in a["sources"] if s["status"] == "error"]
    rows = sum(s["rows"] for a in manifest["artifacts"] for s in a["sources"])
    # Ends the progress table's last line (without a terminal, Live leaves it open) or, on a
    # terminal, leaves a blank line under it.
    err.print()
    err.print(
        f"wrote [bold]{escape(str(output))}[/bold]: {rows} rows, "
        f"{len(manifest['uploads'])} uploads"
        + (f", [red]{len(failed)} source(s) failed[/red]" if failed else ""),
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


@app.command("watch")
def watch(
    name: Annotated[str, typer.Argument(help="The CLIENT_EVENT artifact to run.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Param=value (repeatable).")
    ] = None,
    seconds: Annotated[
        float | None, typer.Option(help="Stop after this many seconds.", min=0)
    ] = None,
    max_rows: Annotated[int | None, typer.Option(help="Stop after this many rows.", min=0)] = None,
    in_process: Annotated[
        bool, typer.Option(help="Run queries in this process, without worker or watchdog.")
    ] = False,
    dirs: DirsOption = None,
) -> None:
    """Run an event (CLIENT_EVENT) artifact on this machine and print its rows as JSON lines as
    things happen, until Ctrl-C, --seconds or --max-rows: how to try one before assigning it.
    """
    repo = _repository(dirs)
    runner = ArtifactRunner(repo, isolated=not in_process)
    try:
        params = parse_artifact_params(param or [], [repo.get(name)])[name]
        planned = runner.plan(name, params, events=True)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    sources = planned.artifact.sources
    rows: queue.Queue[tuple[str, dict[str, Any] | None]] = queue.Queue(1000)
    outcomes = [SourceOutcome(name, source.name) for source in sources]

    def pump(source: Source, outcome: SourceOutcome) -> None:
        try:
            for row in runner.run_source(planned, source, outcome):
                rows.put((source.name, dict(zip(outcome.columns, row, strict=True))))
        finally:
            rows.put((source.name, None))

    pumps = [
        threading.Thread(target=pump, args=pair, daemon=True)
        for pair in zip(sources, outcomes, strict=True)
    ]
    for thread in pumps:
        thread.start()
    deadline = time.monotonic() + seconds if seconds is not None else None
    running, count = len(pumps), 0
    try:
        while running and (max_rows is None or count < max_rows):
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                source_name, row = rows.get(timeout=0.25)
            except queue.Empty:
                continue
            if row is None:
                running -= 1
                continue
            typer.echo(json.dumps({"_source": source_name, **row} if len(sources) > 1 else row))
            count += 1
    except KeyboardInterrupt:
        err.print("[yellow]stopped[/yellow]")
    finally:
        runner.cancel()
        for thread in pumps:
            thread.join(2)
    for outcome in outcomes:
        if outcome.status in ("error", "skipped"):
            err.print(f"[red]{escape(outcome.source or name)}: {escape(outcome.error or '')}[/red]")
    if any(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


class _Progress:
    """A live table: one line per source with its state, rows and time."""

    def __init__(self, plans: list[Planned]) -> None:
        self.lines: dict[tuple[str, str], SourceOutcome] = {}
        for plan in plans:
            artifact: Artifact = plan.artifact
            for source in artifact.sources:
                self.lines[artifact.name, source.name] = SourceOutcome(artifact.name, source.name)

    def update(self, outcome: SourceOutcome) -> None:
        self.lines[outcome.artifact, outcome.source] = outcome

    def table(self) -> Table:
        table = Table("artifact", "source", "state", "rows", "time", header_style="bold")
        styles = {"finished": "green", "error": "red", "skipped": "dim", "running": "cyan"}
        for (name, source), outcome in self.lines.items():
            style = styles.get(outcome.status, "")
            state = outcome.status + (f": {outcome.error}" if outcome.error else "")
            table.add_row(
                Text(name),
                Text(source or "-"),
                Text(state, style=style),
                str(outcome.rows),
                f"{outcome.elapsed:.1f}s" if outcome.elapsed else "",
            )
        return table
