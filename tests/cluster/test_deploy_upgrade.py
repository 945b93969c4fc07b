"""``peregrine deploy`` on a real 3-frontend cluster (HAProxy, Redis, PostgreSQL, a simulated
fleet): a new version that fails its uptests never enters the pool and the cluster stays on
the old one; a rolling upgrade, one frontend at a time under a running hunt, loses and
doubles nothing, the hunt completes and the agents never all reconnect at once.

``pytest -s`` prints the measured times (docs/benchmarks.md, "Rolling upgrade").
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peregrine.cli import app
from peregrine.cluster.devcluster import DevCluster
from peregrine.deploy import launcher
from peregrine.deploy.clusters import from_dev_cluster
from peregrine.deploy.model import UPTEST_LOG, save_deployment
from peregrine.deploy.rolling import Deployer, DeployError, Timing, UpgradeFailed
from peregrine.loadtest.reconnects import ReconnectWatch
from tests.cluster.conftest import postgres_server_url
from tests.cluster.faults import (
    Stopwatch,
    all_held,
    assert_exactly_once,
    fleet,
    start_hunt,
    wait_hunt_done,
)
from tests.cluster.services import program

pytestmark = [pytest.mark.slow]

CLIENTS = 90
ROWS = 1500


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A cluster of its own: the upgrades rename its frontends, so ``down`` (and whatever
    needs the frontends' names) reads them again from ``cluster.json``, which the deployer
    keeps current."""
    program("haproxy")
    program("redis-server")
    directory = tmp_path_factory.mktemp("deploy") / "dev"
    DevCluster.up(directory, 3, postgres_url=postgres_server_url(), timeout=120)
    try:
        yield DevCluster(directory)
    finally:
        DevCluster(directory).down()


def deployer(cluster: DevCluster, **timing: object) -> Deployer:
    deployment, path = from_dev_cluster(cluster.directory, version="1")
    if not path.exists():
        save_deployment(deployment, path)
    return Deployer(path, cluster.token, timing=Timing(**timing), say=print)  # type: ignore[arg-type]


class PoolWatch:
    """Every instance name the balancer ever listed, sampled every 0.1 s in a thread."""

    def __init__(self, deploy: Deployer) -> None:
        self.deploy = deploy
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, state in self.deploy.pool.states().items():
                self.seen.setdefault(name, set()).add(state)

    def __enter__(self) -> PoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.timeout(120)
def test_a_version_that_fails_its_uptests_never_enters_the_pool(cluster: DevCluster) -> None:
    deploy = deployer(cluster, soak_seconds=1, uptest_timeouts={"agent": 8})
    before = {i.name: i.pid for i in deploy.deployment.instances}
    with PoolWatch(deploy) as watch, pytest.raises(UpgradeFailed, match="failed its uptests"):
        # Ready and answering its API, but it refuses every agent's enrollment.
        deploy.upgrade("2-broken", settings={"enrollment_secret": "not-the-deployment-secret"})
    after = deploy.deployment
    assert after.upgrade is not None and after.upgrade.outcome == "rolled back"
    assert {i.name: i.pid for i in after.instances} == before  # never stopped, never replaced
    assert all(i.pool == "ready" and i.version == "1" for i in after.instances)
    assert set(watch.seen) == set(before), watch.seen  # the new one was never listed
    assert deploy.pool.states() == dict.fromkeys(before, "UP")
    runs = [json.loads(line) for line in (deploy.path.parent / UPTEST_LOG).read_text().splitlines()]
    failed = runs[-1]
    assert failed["version"] == "2-broken" and not failed["passed"], failed
    assert failed["checks"]["readyz"] == "ok" and failed["checks"]["api"] == "not run", failed
    assert failed["checks"]["agent"] != "ok" and failed["checks"]["cleanup"] == "ok", failed
    assert cluster.state.frontends and DevCluster(cluster.directory).pool() == {
        server: "UP" for server in DevCluster(cluster.directory).pool_servers()
    }


@pytest.mark.timeout(240)
def test_a_rolling_upgrade_under_a_hunt_loses_nothing_and_moves_agents_gradually(
    cluster: DevCluster, tmp_path: Path
) -> None:
    deploy = deployer(cluster, soak_seconds=3)
    old = [i.name for i in deploy.deployment.instances]

    async def scenario() -> None:
        agents = fleet(
            cluster, CLIENTS, tmp_path / "keys", rows=ROWS,
            answer_delay=lambda index: (index % 40) * 1.0,
        )  # fmt: skip
        await agents.start()
        watch = ReconnectWatch(agents)
        try:
            await agents.wait_connected(CLIENTS, timeout=60)
            await all_held(DevCluster(cluster.directory), agents.client_ids)
            watcher = asyncio.create_task(watch.run())
            hunt_id = await start_hunt(cluster)
            clock = Stopwatch()
            await asyncio.to_thread(deploy.upgrade, "2", batch=1)
            took = clock()
            await wait_hunt_done(cluster, hunt_id, CLIENTS, timeout=90)
            await agents.wait_connected(CLIENTS, timeout=30)
            watcher.cancel()
            print(
                f"\nrolling upgrade of 3 frontends, one at a time, {CLIENTS} agents under a "
                f"hunt: {took:.1f} s; longest disconnection {watch.longest():.1f} s; at most "
                f"{watch.most_disconnected} agents disconnected at once; peak "
                f"{watch.peak_per_second()} reconnections in a second; "
                f"{len(watch.gaps)} reconnections; {agents.stats.messages_resent} messages resent"
            )
            await asyncio.to_thread(assert_exactly_once, cluster, hunt_id, agents.client_ids, ROWS)
            # Each frontend's agents left a few at a time, one frontend after another.
            assert 0 < watch.most_disconnected <= CLIENTS // 2, watch.most_disconnected
            assert watch.peak_per_second() < CLIENTS // 3, watch.peak_per_second()
        finally:
            await agents.stop()

    asyncio.run(scenario())
    after = deploy.deployment
    assert after.upgrade is not None and after.upgrade.outcome == "finished"
    assert sorted(after.upgrade.done) == sorted(old)
    assert [i.version for i in after.instances] == ["2", "2", "2"]
    assert not set(old) & {i.name for i in after.instances}
    assert deploy.pool.states() == {i.name: "UP" for i in after.instances}
    assert all(i.uptest is not None and i.uptest.passed for i in after.instances)
    # Each batch's soak read the new instance's own /metrics: no error of its own.
    assert [soak.frontend_errors for soak in deploy.soaks] == [0, 0, 0], deploy.soaks


def interrupted(cluster: DevCluster, version: str) -> set[str]:
    """An upgrade to ``version`` stopped as its first new instance entered the pool (the
    operator's terminal went away); the instances serving before it."""
    first = deployer(cluster, soak_seconds=1)
    before = {i.name for i in first.deployment.instances if i.pool == "ready"}

    def interrupt(line: str) -> None:
        print(line)
        if line.endswith("is in the pool"):
            raise KeyboardInterrupt

    first.say = interrupt
    with pytest.raises(KeyboardInterrupt):
        first.upgrade(version)
    return before


@pytest.mark.timeout(150)
def test_an_interrupted_upgrade_is_rolled_back_from_the_deployment_file(
    cluster: DevCluster,
) -> None:
    version = "interrupted-1"
    before = interrupted(cluster, version)
    # What the file says: a new instance in the pool beside the old ones, the upgrade running.
    second = deployer(cluster)
    upgrade = second.deployment.upgrade
    assert upgrade is not None and upgrade.outcome == "running" and upgrade.version == version
    new = [i for i in second.deployment.instances if i.version == version]
    assert len(new) == 1 and second.pool.states()[new[0].name] == "UP"
    with pytest.raises(DeployError, match="--resume"):
        second.upgrade("another")
    second.rollback()
    third = deployer(cluster)
    assert third.deployment.upgrade is not None
    assert third.deployment.upgrade.outcome == "rolled back"
    assert {i.name for i in third.deployment.instances} == before
    assert third.pool.states() == dict.fromkeys(before, "UP")
    assert not launcher.alive(new[0])


@pytest.mark.timeout(200)
def test_a_version_that_dies_in_its_soak_is_rolled_back_and_the_old_one_restarted(
    cluster: DevCluster, tmp_path: Path
) -> None:
    deploy = deployer(cluster, soak_seconds=30)
    before = {i.name: i.pid for i in deploy.deployment.instances if i.pool == "ready"}
    # Passes its uptests, takes its share of agents, then dies 30 s after it started: after
    # the old instance of its slot was drained and stopped (or while it drains), before the
    # soak ends.
    dies = (
        f"{sys.executable} -m peregrine server --config {{config}} --no-local-agent & "
        "sleep 30; kill -9 $!"
    )

    async def scenario() -> None:
        agents = fleet(cluster, 30, tmp_path / "keys")
        await agents.start()
        try:
            await agents.wait_connected(30, timeout=60)
            with pytest.raises(UpgradeFailed, match="exited during the soak"):
                await asyncio.to_thread(deploy.upgrade, "3-dies", command=["sh", "-c", dies])
            await agents.wait_connected(30, timeout=60)
            await all_held(DevCluster(cluster.directory), agents.client_ids)
        finally:
            await agents.stop()

    asyncio.run(scenario())
    after = deploy.deployment
    assert after.upgrade is not None and after.upgrade.outcome == "rolled back"
    assert {i.name for i in after.instances} == set(before)
    restarted = [i for i in after.instances if i.pid != before[i.name]]
    assert len(restarted) == 1 and launcher.alive(restarted[0]), after.instances
    assert deploy.pool.states() == dict.fromkeys(before, "UP")


@pytest.mark.timeout(180)
def test_an_interrupted_upgrade_is_resumed_from_the_deployment_file(cluster: DevCluster) -> None:
    before = interrupted(cluster, "resumed")
    deployer(cluster, soak_seconds=1).resume()
    after = deployer(cluster)
    assert after.deployment.upgrade is not None
    assert after.deployment.upgrade.outcome == "finished"
    assert [i.version for i in after.deployment.instances] == ["resumed"] * 3
    assert not before & {i.name for i in after.deployment.instances}
    assert after.pool.states() == {i.name: "UP" for i in after.deployment.instances}
    assert all(launcher.alive(i) for i in after.deployment.instances)


@pytest.mark.timeout(90)
def test_deploy_status_and_uptest_commands_on_the_running_cluster(cluster: DevCluster) -> None:
    path = deployer(cluster).path
    runner = CliRunner()
    name = deployer(cluster).deployment.instances[0].name
    uptest = runner.invoke(app, ["deploy", "uptest", name, "--file", str(path)])
    assert uptest.exit_code == 0, uptest.output  # the dev cluster's token is found
    for check in ("readyz", "agent", "api", "query", "cleanup"):
        assert check in uptest.output
    status = runner.invoke(app, ["deploy", "status", "--json", "--file", str(path)])
    assert status.exit_code == 0, status.output
    rows = {r["name"]: r for r in json.loads(status.output)["instances"]}
    assert rows[name]["uptest"].startswith("passed")
    assert {r["balancer"] for r in rows.values()} == {"UP"}
    assert {r["process"] for r in rows.values()} == {"running"}
    history = runner.invoke(app, ["deploy", "uptest", name, "--history", "--file", str(path)])
    assert history.exit_code == 0 and '"passed": true' in history.output
