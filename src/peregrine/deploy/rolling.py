"""Moving instances in and out of the pool, and the rolling upgrade built on it.

An instance joins only after it passed its uptests and the balancer's own checks see it up;
it leaves drained: out of the pool for new connections first, then stopped gracefully (the
frontend drains its agents a few at a time, each once what it is storing is acknowledged),
then taken off the balancer's list.

An upgrade replaces the serving instances ``batch`` at a time: start the new version beside
the old (its own ports), uptest it, put it in the pool, retire the old one, then watch the new
ones for ``soak`` seconds (alive, up in the balancer, few connection errors). A batch that
fails stops the upgrade and rolls it back: every old instance replaced so far is started
again (same configuration, same ports), put back in the pool, and the new ones are retired.
Each step is written to the deployment file before the next, so ``resume`` and ``rollback``
work after an interruption.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from peregrine.deploy import launcher
from peregrine.deploy.metrics import frontend_errors
from peregrine.deploy.model import (
    UPTEST_LOG,
    Instance,
    PoolState,
    Upgrade,
    load_deployment,
    netloc,
    now,
    save_deployment,
)
from peregrine.deploy.pools import BACKENDS, HAProxyPool, Pool, open_pool
from peregrine.deploy.uptests import UptestRun, append_log, run_uptests


class DeployError(RuntimeError):
    """A deployment step failed; the message says what and what to do next."""


class UpgradeFailed(DeployError):
    """A batch failed and the upgrade was rolled back."""


@dataclass
class Timing:
    """How long each wait may last, and how a batch is judged."""

    #: For the balancer's checks to see a new instance up (two checks 2 s apart).
    pool_seconds: float = 30.0
    #: For a retired instance to drain and exit before it is killed.
    stop_seconds: float = launcher.STOP_TIMEOUT
    #: For an old instance started again by a rollback to be ready.
    ready_seconds: float = 90.0
    #: Watching a batch's new instances after the old ones left.
    soak_seconds: float = 10.0
    #: Connection errors per connection the balancer made to the new instances in the soak.
    max_error_rate: float = 0.05
    #: Fewer errors than this never fail a batch (one refused connection is no trend).
    min_errors: int = 3
    #: Errors the new instances may count themselves (``peregrine_errors_total``) in the soak.
    max_frontend_errors: int = 0
    uptest_timeouts: dict[str, float] = field(default_factory=dict)


@dataclass
class Counts:
    """What went wrong with some instances: connection and response errors and connections,
    as the balancer counted them, and the instances' own errors (None: no ``/metrics``)."""

    connection_errors: int = 0
    connections: int = 0
    frontend_errors: int | None = 0

    def __sub__(self, before: Counts) -> Counts:
        own = None
        if self.frontend_errors is not None and before.frontend_errors is not None:
            own = self.frontend_errors - before.frontend_errors
        return Counts(
            self.connection_errors - before.connection_errors,
            self.connections - before.connections,
            own,
        )

    def __str__(self) -> str:
        own = "unknown (no /metrics)" if self.frontend_errors is None else self.frontend_errors
        return (
            f"{self.connection_errors} connection errors in {self.connections} connections, "
            f"their own errors {own}"
        )


class Deployer:
    """One deployment file and the balancer it names."""

    def __init__(
        self,
        path: Path,
        token: str,
        *,
        timing: Timing | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.path = path.absolute()
        self.deployment = load_deployment(self.path)
        self.pool: Pool = open_pool(self.deployment)
        self.token = token
        self.timing = timing or Timing()
        self.say = say
        #: What each batch's soak saw, in order.
        self.soaks: list[Counts] = []

    @property
    def log_dir(self) -> Path:
        return self.path.parent / "logs"

    def save(self) -> None:
        save_deployment(self.deployment, self.path)
        if self.deployment.dev_cluster:
            from peregrine.deploy.clusters import sync_dev_cluster

            sync_dev_cluster(self.deployment)

    # -- one instance -------------------------------------------------------------------------

    def set_pool(self, instance: Instance, state: PoolState) -> None:
        instance.pool = state
        self.pool.apply(instance, self.deployment)
        self.save()

    def wait_in_pool(self, instance: Instance) -> None:
        """Until the balancer's own checks have the instance up (nginx: at once)."""
        if not isinstance(self.pool, HAProxyPool):
            return
        deadline = time.monotonic() + self.timing.pool_seconds
        while (state := self.pool.states().get(instance.name)) != "UP":
            if time.monotonic() > deadline:
                raise DeployError(
                    f"HAProxy does not see {instance.name} up after "
                    f"{self.timing.pool_seconds:g} s (it says {state}): check its /readyz "
                    f"and {self.log_dir / instance.name}.log"
                )
            time.sleep(0.25)

    def uptest(self, instance: Instance) -> UptestRun:
        """Run the uptests, record them (log file and the instance's summary)."""
        deployment = self.deployment
        run = asyncio.run(
            run_uptests(
                instance, client_config=Path(deployment.client_config),
                ca_cert=Path(deployment.ca_cert), token=self.token,
                timeouts=self.timing.uptest_timeouts,
            )
        )  # fmt: skip
        append_log(self.path.parent / UPTEST_LOG, run)
        instance.uptest = run.summary()
        self.save()
        failed = {k: v for k, v in run.checks.items() if v != "ok"}
        self.say(f"uptest of {instance.name}: {'passed' if run.passed else failed}")
        return run

    def admit(self, instance: Instance) -> None:
        """Into the pool: ready, then seen up by the balancer."""
        self.set_pool(instance, "ready")
        self.wait_in_pool(instance)
        self.say(f"{instance.name} is in the pool")

    def retire(self, instance: Instance) -> None:
        """Out of the pool, drained: no new connections, then a graceful stop (the
        frontend moves its agents a few at a time), then off the balancer's list."""
        if instance.pool != "absent":
            self.set_pool(instance, "drain")
        launcher.stop(instance, self.timing.stop_seconds)
        self.save()
        if instance.pool != "absent":
            self.set_pool(instance, "absent")
        self.say(f"{instance.name} drained and stopped")

    def restart_old(self, instance: Instance) -> None:
        """An instance of the previous version started again (rollback): ready, in the pool."""
        if not launcher.alive(instance):
            launcher.start(instance, self.log_dir)
            self.save()
        deadline = time.monotonic() + self.timing.ready_seconds
        while not _ready(instance, Path(self.deployment.ca_cert)):
            if not launcher.alive(instance):
                raise DeployError(f"{instance.name} exited: see {self.log_dir}/{instance.name}.log")
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{instance.name} not ready after {self.timing.ready_seconds:g} s"
                )
            time.sleep(0.25)
        self.admit(instance)

    # -- the upgrade --------------------------------------------------------------------------

    def upgrade(
        self,
        version: str,
        *,
        batch: int = 1,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        settings: dict[str, object] | None = None,
    ) -> None:
        """Replace every serving instance with ``version``, ``batch`` at a time; rolled back
        (and ``UpgradeFailed``) when a batch fails."""
        current = self.deployment.upgrade
        if current is not None and current.outcome.startswith(("running", "failed")):
            raise DeployError(
                f"an upgrade to {current.version} is not finished ({current.outcome}): "
                "'peregrine deploy upgrade --resume' to go on or 'peregrine deploy rollback'"
            )
        if batch < 1:
            raise DeployError("--batch must be 1 or more")
        self.deployment.upgrade = Upgrade(
            version=version, command=list(command or []), env=dict(env or {}),
            settings=dict(settings or {}), batch=batch, started=now(),
        )  # fmt: skip
        self.save()
        self.resume()

    def resume(self) -> None:
        """Go on with the upgrade in the deployment file, from its first slot not done."""
        upgrade = self._upgrade("resume")
        slots = [i.slot for i in self.deployment.instances if i.pool == "ready"]
        todo = [s for s in dict.fromkeys(slots) if s not in upgrade.done]
        self.say(
            f"upgrading {len(todo)} instance(s) to {upgrade.version}, {upgrade.batch} at a time"
        )
        try:
            for first in range(0, len(todo), upgrade.batch):
                self._batch(upgrade, todo[first : first + upgrade.batch])
        except DeployError as exc:
            upgrade.outcome = f"failed: {exc}"
            self.save()
            self.say(f"upgrade failed ({exc}); rolling back")
            self.rollback()
            raise UpgradeFailed(
                f"the upgrade to {upgrade.version} failed and was rolled back: {exc}"
            ) from exc
        old = set(upgrade.replacing.values())
        self.deployment.instances = [i for i in self.deployment.instances if i.name not in old]
        upgrade.outcome = "finished"
        self.save()
        self.say(f"every instance runs {upgrade.version}")

    def _batch(self, upgrade: Upgrade, slots: list[str]) -> None:
        pairs = [self._replacement(upgrade, slot) for slot in slots]
        for _old, new in pairs:
            if not launcher.alive(new):
                launcher.start(new, self.log_dir)
                self.save()
        for _old, new in pairs:
            run = self.uptest(new)
            if not run.passed:
                failed = "; ".join(f"{k}: {v}" for k, v in run.checks.items() if v != "ok")
                raise DeployError(f"{new.name} ({upgrade.version}) failed its uptests ({failed})")
        for _old, new in pairs:
            self.admit(new)
        baseline = self._counts([new for _, new in pairs])
        for old, _new in pairs:
            self.retire(old)
        self._soak([new for _, new in pairs], baseline)
        upgrade.done += slots
        self.save()

    def _replacement(self, upgrade: Upgrade, slot: str) -> tuple[Instance, Instance]:
        """(the old instance of ``slot``, its new one), the new one made if need be."""
        deployment = self.deployment
        if slot in upgrade.replacing:
            old = deployment.instance(upgrade.replacing[slot])
            for instance in deployment.instances:
                if instance.slot == slot and instance.name != old.name:
                    return old, instance
        else:
            old = next(i for i in deployment.instances if i.slot == slot and i.pool == "ready")
        name = launcher.next_name(slot, {i.name for i in deployment.instances})
        new = launcher.new_instance(
            old, name, version=upgrade.version, command=upgrade.command, env=upgrade.env,
            settings=upgrade.settings,
        )  # fmt: skip
        deployment.instances.append(new)
        upgrade.replacing[slot] = old.name
        self.save()
        return old, new

    def _soak(self, instances: list[Instance], baseline: Counts) -> None:
        """Watch the batch's new instances: alive and up all along, few connection errors
        (the balancer's count) and few errors of their own (their ``/metrics``)."""
        end = time.monotonic() + self.timing.soak_seconds
        while time.monotonic() < end:
            for instance in instances:
                if not launcher.alive(instance):
                    raise DeployError(f"{instance.name} exited during the soak")
                state = self.pool.states().get(instance.name)
                if isinstance(self.pool, HAProxyPool) and state not in ("UP", "UP 1/2"):
                    raise DeployError(f"the balancer has {instance.name} {state} in the soak")
            time.sleep(0.5)
        seen = self._counts(instances) - baseline
        self.soaks.append(seen)
        names = ", ".join(i.name for i in instances)
        self.say(f"soak of {names}: {seen}")
        rate = seen.connection_errors / max(1, seen.connections)
        if seen.connection_errors >= self.timing.min_errors and rate > self.timing.max_error_rate:
            raise DeployError(f"error rate {rate:.1%} on {names} during the soak ({seen})")
        if (seen.frontend_errors or 0) > self.timing.max_frontend_errors:
            raise DeployError(f"{names} counted errors of their own during the soak ({seen})")

    def _counts(self, instances: list[Instance]) -> Counts:
        """What the balancer and the instances' ``/metrics`` counted for them so far."""
        counts = Counts()
        if isinstance(self.pool, HAProxyPool):
            stats = self.pool.stats()
            for instance in instances:
                for backend in BACKENDS:
                    row = stats.get(f"{backend}/{instance.name}", {})
                    counts.connection_errors += _count(row, "econ") + _count(row, "eresp")
                    counts.connections += _count(row, "stot")
        ca_cert = Path(self.deployment.ca_cert)
        own = [frontend_errors(i, ca_cert, self.token) for i in instances]
        counts.frontend_errors = None if None in own else sum(n or 0 for n in own)
        return counts

    def rollback(self) -> None:
        """Put the previous version back: each replaced instance started again and in the
        pool, then the new ones retired; the deployment says "rolled back"."""
        upgrade = self._upgrade("roll back")
        deployment = self.deployment
        for slot, old_name in upgrade.replacing.items():
            old = deployment.instance(old_name)
            news = [i for i in deployment.instances if i.slot == slot and i.name != old_name]
            if old.pool != "ready" or not launcher.alive(old):
                self.restart_old(old)
            for new in news:
                self.retire(new)
                deployment.instances.remove(new)
            self.save()
        upgrade.outcome = "rolled back"
        self.save()
        self.say(f"rolled back: every instance runs its version from before {upgrade.version}")

    def _upgrade(self, doing: str) -> Upgrade:
        upgrade = self.deployment.upgrade
        if upgrade is None or upgrade.outcome in ("finished", "rolled back"):
            raise DeployError(f"no upgrade to {doing}: start one with 'peregrine deploy upgrade'")
        return upgrade


def _ready(instance: Instance, ca_cert: Path) -> bool:
    """``/readyz`` answers 200 on both of its ports."""
    agent_port = f"https://{netloc(instance.host, instance.port)}/readyz"
    tls = ssl.create_default_context(cafile=str(ca_cert))
    try:
        return all(
            httpx.get(url, verify=tls, timeout=3).status_code == 200
            for url in (f"{instance.api_url}/readyz", agent_port)
        )
    except httpx.HTTPError:
        return False


def _count(row: dict[str, str], name: str) -> int:
    value = row.get(name) or "0"
    return int(value) if value.isdigit() else 0
