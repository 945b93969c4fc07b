"""``peregrine deploy``: a cluster's frontend instances, the balancer's pools, uptests and
rolling upgrades (``peregrine.deploy``)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from peregrine.cli.output import print_table
from peregrine.deploy.model import (
    UPTEST_LOG,
    Deployment,
    NginxBalancer,
    PoolState,
    load_deployment,
    save_deployment,
)

app = typer.Typer(
    help="Deploy and upgrade a cluster's frontends: balancer pools, uptests, rolling upgrades.",
    no_args_is_help=True,
)
console = Console(emoji=False)
err = Console(stderr=True, emoji=False)

FileOption = Annotated[
    Path,
    typer.Option(
        "--file", "-f", envvar="PEREGRINE_DEPLOY_FILE",
        help="The deployment file (deploy.yaml, beside the cluster's configuration).",
    ),
]  # fmt: skip
TokenOption = Annotated[
    str,
    typer.Option(
        envvar="PEREGRINE_TOKEN",
        help="An administrator's API token, for the uptests (a dev cluster's is found).",
    ),
]
DEFAULT_FILE = Path("deploy.yaml")


def _fail(message: str) -> typer.Exit:
    err.print("[bold red]Error:[/bold red] ", end="")
    err.print(message, highlight=False, markup=False)
    return typer.Exit(1)


def _load(path: Path) -> Deployment:
    try:
        return load_deployment(path)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None


def _deployer(path: Path, token: str, **timing: Any) -> Any:
    from peregrine.deploy.clusters import dev_cluster_token
    from peregrine.deploy.rolling import Deployer, Timing

    token = token or dev_cluster_token(_load(path))
    if not token:
        raise _fail("the uptests need an API token: give --token or set PEREGRINE_TOKEN")
    return Deployer(path, token, timing=Timing(**timing), say=lambda line: err.print(line))


@app.command("init")
def init(
    config_dir: Annotated[
        Path | None, typer.Option(help="A generated cluster's folder (config generate).")
    ] = None,
    dev_cluster: Annotated[
        Path | None, typer.Option(help="A development cluster's folder (scripts/cluster up).")
    ] = None,
    nginx_include: Annotated[
        Path | None, typer.Option(help="Keep an nginx include file instead of HAProxy's pools.")
    ] = None,
    nginx_reload: Annotated[str, typer.Option(help="How to reload nginx.")] = "nginx -s reload",
    version: Annotated[str, typer.Option(help="The version the instances run now.")] = "",
    force: Annotated[bool, typer.Option(help="Replace an existing deployment file.")] = False,
) -> None:
    """Write the deployment file of a cluster: its frontends and its balancer."""
    from peregrine.deploy.clusters import from_dev_cluster, from_generated

    if (dev_cluster is None) == (config_dir is None):
        raise _fail(
            "give --config-dir DIR (what 'peregrine config generate --frontends N' wrote) "
            "or --dev-cluster DIR (a cluster made by scripts/cluster up)"
        )
    try:
        if dev_cluster is not None:
            deployment, path = from_dev_cluster(dev_cluster, version)
        else:
            assert config_dir is not None
            deployment, path = from_generated(config_dir, version)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if nginx_include is not None:
        deployment.balancer = NginxBalancer(
            include=str(nginx_include.absolute()), reload=shlex.split(nginx_reload)
        )
    if path.exists() and not force:
        raise _fail(f"{path} exists: use --force to replace it")
    save_deployment(deployment, path)
    console.print(f"wrote {path} ({len(deployment.instances)} instances)")
    console.print(f"use it with: export PEREGRINE_DEPLOY_FILE={path}", highlight=False)


@app.command("status")
def status(
    file: FileOption = DEFAULT_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each instance: version, process, place in the pool (as the balancer says), last uptest."""
    from peregrine.deploy import launcher
    from peregrine.deploy.pools import PoolError, open_pool

    deployment = _load(file)
    try:
        balancer = open_pool(deployment).states()
    except (OSError, PoolError) as exc:
        err.print(f"the balancer does not answer: {exc}", markup=False)
        balancer = {}
    rows = [
        {
            "name": i.name, "slot": i.slot, "version": i.version,
            "agents": f"{i.host}:{i.port}", "api": f"{i.host}:{i.api_port}",
            "process": "running" if launcher.alive(i) else "stopped",
            "pool": i.pool, "balancer": balancer.get(i.name, "-"),
            "uptest": None if i.uptest is None else _uptest(i.uptest.passed, i.uptest.at),
        }
        for i in deployment.instances
    ]  # fmt: skip
    upgrade = deployment.upgrade
    report = {
        "instances": rows,
        "upgrade": None if upgrade is None else {
            "version": upgrade.version, "outcome": upgrade.outcome, "done": upgrade.done,
            "batch": upgrade.batch,
        },
    }  # fmt: skip
    if as_json:
        console.print_json(json.dumps(report))
        return
    columns = ["name", "slot", "version", "agents", "api", "process", "pool", "balancer", "uptest"]
    print_table(console, columns, [[str(r[c] or "-") for c in columns] for r in rows])
    if upgrade is not None:
        console.print(
            f"upgrade to {upgrade.version}: {upgrade.outcome} "
            f"(slots done: {', '.join(upgrade.done) or 'none'})",
            highlight=False,
        )


def _uptest(passed: bool, at: float) -> str:
    when = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{'passed' if passed else 'FAILED'} {when}"


@app.command("uptest")
def uptest(
    name: Annotated[str, typer.Argument(help="The instance to test (see deploy status).")],
    file: FileOption = DEFAULT_FILE,
    token: TokenOption = "",
    history: Annotated[bool, typer.Option(help="Show its recorded uptests instead.")] = False,
) -> None:
    """Run the uptests against one instance (on its own ports), or show its recorded ones."""
    from peregrine.deploy.uptests import read_log

    if history:
        for run in read_log(file.parent / UPTEST_LOG, name):
            console.print_json(json.dumps(run))
        return
    deployer = _deployer(file, token)
    try:
        instance = deployer.deployment.instance(name)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    run = deployer.uptest(instance)
    print_table(
        console, ["check", "outcome", "seconds"],
        [[c, o, f"{run.seconds.get(c, 0):.2f}"] for c, o in run.checks.items()],
    )  # fmt: skip
    if not run.passed:
        raise typer.Exit(1)


@app.command("pool")
def pool(
    name: Annotated[str, typer.Argument(help="The instance.")],
    state: Annotated[
        str, typer.Argument(help="ready (traffic), drain, maint, or absent (off the list).")
    ],
    file: FileOption = DEFAULT_FILE,
) -> None:
    """Put an instance in the balancer's pools, drain it, or take it out (no reload)."""
    from peregrine.deploy.pools import PoolError, open_pool

    if state not in ("ready", "drain", "maint", "absent"):
        raise _fail(f"{state!r}: the state is one of ready, drain, maint, absent")
    deployment = _load(file)
    try:
        instance = deployment.instance(name)
        instance.pool = _pool_state(state)
        open_pool(deployment).apply(instance, deployment)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    except (OSError, PoolError) as exc:
        raise _fail(f"the balancer refused: {exc}") from None
    save_deployment(deployment, file)
    console.print(f"{name}: {state}")


def _pool_state(state: str) -> PoolState:
    assert state in ("ready", "drain", "maint", "absent")
    return state  # type: ignore[return-value]


def _settings(values: list[str]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--set {item!r}: write KEY=VALUE (drain.agents_seconds=2)")
        settings[key] = yaml.safe_load(value)
    return settings


@app.command("upgrade")
def upgrade(
    version: Annotated[str, typer.Option(help="The version label of the new instances.")] = "",
    command: Annotated[
        str, typer.Option(help="The new instances' program ({config}: its configuration).")
    ] = "",
    set_: Annotated[
        list[str], typer.Option("--set", help="A configuration key of the new instances.")
    ] = [],  # noqa: B006 (typer needs a list default)
    batch: Annotated[int, typer.Option(min=1, help="Instances replaced at a time.")] = 1,
    soak: Annotated[float, typer.Option(min=0, help="Seconds each batch is watched.")] = 10.0,
    resume: Annotated[bool, typer.Option(help="Go on with an interrupted upgrade.")] = False,
    file: FileOption = DEFAULT_FILE,
    token: TokenOption = "",
) -> None:
    """Replace every instance with a new version, a batch at a time; a batch that fails its
    uptests or its soak rolls the whole upgrade back."""
    from peregrine.deploy.rolling import DeployError

    deployer = _deployer(file, token, soak_seconds=soak)
    try:
        if resume:
            deployer.resume()
        elif not version:
            raise _fail("give --version (a label for the new instances), or --resume")
        else:
            deployer.upgrade(
                version, batch=batch, command=shlex.split(command), settings=_settings(set_)
            )
    except DeployError as exc:
        raise _fail(str(exc)) from None


@app.command("rollback")
def rollback(file: FileOption = DEFAULT_FILE, token: TokenOption = "") -> None:
    """Put the version from before an unfinished upgrade back in the pool."""
    from peregrine.deploy.rolling import DeployError

    try:
        _deployer(file, token).rollback()
    except DeployError as exc:
        raise _fail(str(exc)) from None
