"""Uptests: what a new instance must pass, straight on its own ports, before it gets traffic.

In order, each with its own time-out (a hung instance fails its check, it never hangs the
upgrade):

* ``readyz``: ``/readyz`` answers 200 on the API port and the agent port (the balancer's own
  check; the time-out covers the process starting);
* ``agent``: a throw-away agent (a new key each time, the deployment's CA and enrollment
  secret) enrolls and is welcomed on the instance's agent port: the real handshake;
* ``api``: ``/api/v1/status`` with the deployment's token (authentication, the datastore);
* ``query``: a collection on that agent through the instance's API, finished with its rows
  (scheduling, delivery, ingestion, filestore);
* ``cleanup``: the agent is stopped and its client deleted (with its collections), so the
  fleet holds no trace of it. A cleanup that fails fails the uptest: it must not pollute.

Every run is appended to ``uptests.jsonl`` beside the deployment file, as one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from peregrine.config import load_client_config
from peregrine.deploy.model import Instance, UptestSummary, netloc, now

#: The uptest agent answers this with canned rows (the simulator's answers).
ARTIFACT = "Linux.Sys.Groups"
#: Seconds each check may take, by name.
TIMEOUTS = {"readyz": 60.0, "agent": 20.0, "api": 10.0, "query": 30.0, "cleanup": 20.0}
CHECKS = tuple(TIMEOUTS)


@dataclass
class UptestRun:
    """One uptest of one instance: each check's outcome (``ok`` or the reason) and time."""

    instance: str
    version: str
    at: float = field(default_factory=now)
    checks: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    api_version: str = ""

    @property
    def passed(self) -> bool:
        return len(self.checks) == len(CHECKS) and all(v == "ok" for v in self.checks.values())

    def summary(self) -> UptestSummary:
        total = round(sum(self.seconds.values()), 2)
        return UptestSummary(self.at, self.passed, dict(self.checks), total)

    def record(self) -> dict[str, object]:
        return {"instance": self.instance, "version": self.version, "at": self.at,
                "passed": self.passed, "checks": self.checks, "seconds": self.seconds,
                "api_version": self.api_version}  # fmt: skip


def append_log(path: Path, run: UptestRun) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(run.record()) + "\n")


def read_log(path: Path, instance: str | None = None, last: int = 20) -> list[dict[str, object]]:
    """The last ``last`` runs recorded (of ``instance`` only, if given)."""
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in runs if instance is None or r["instance"] == instance][-last:]


class _Uptest:
    def __init__(self, instance: Instance, client_config: Path, ca_cert: Path, token: str) -> None:
        self.instance = instance
        self.client_config = client_config
        self.ca_cert = ca_cert
        self.token = token
        self.run = UptestRun(instance.name, instance.version)
        self.client_id = ""

    async def check(self, name: str, body: Callable[[], Awaitable[None]], timeout: float) -> bool:
        started = time.monotonic()
        try:
            await asyncio.wait_for(body(), timeout)
            outcome = "ok"
        except TimeoutError:
            outcome = f"no answer within {timeout:g} s"
        except Exception as exc:  # any failure is the check's outcome, in a line
            outcome = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        self.run.checks[name] = outcome
        self.run.seconds[name] = round(time.monotonic() - started, 3)
        return outcome == "ok"

    async def readyz(self) -> None:
        """Until both ports answer 200 (the check's time-out bounds it)."""
        instance = self.instance
        urls = [f"{instance.api_url}/readyz",
                f"https://{netloc(instance.host, instance.port)}/readyz"]  # fmt: skip
        tls = ssl.create_default_context(cafile=str(self.ca_cert))
        async with httpx.AsyncClient(verify=tls, timeout=3) as http:
            for url in urls:
                while True:
                    try:
                        if (await http.get(url)).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)


async def run_uptests(
    instance: Instance,
    *,
    client_config: Path,
    ca_cert: Path,
    token: str,
    timeouts: dict[str, float] | None = None,
) -> UptestRun:
    """Every check against ``instance``; stops at the first failure (the rest are not run
    and say so), but always cleans up."""
    from peregrine.client import AsyncPeregrine, NotFound
    from peregrine.loadtest import Fleet

    limits = {**TIMEOUTS, **(timeouts or {})}
    test = _Uptest(instance, client_config, ca_cert, token)
    run = test.run
    api = AsyncPeregrine(instance.api_url, token, ca_cert=str(ca_cert))
    config = msgspec.structs.replace(
        load_client_config(client_config), server_urls=[instance.agent_url], poll_min=0.5,
        poll_max=2.0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="peregrine-uptest-") as keys:
        agent = Fleet(config, 1, key_dir=Path(keys), rows=3, row_bytes=16)

        async def handshake() -> None:
            await agent.start()
            test.client_id = agent.client_ids[0]
            try:
                await agent.wait_connected(1, timeout=max(0.1, limits["agent"] - 0.5))
            except TimeoutError as exc:  # say why (refused, rejected...), not only "no answer"
                raise RuntimeError(str(exc)) from None

        async def status() -> None:
            run.api_version = (await api.status()).version

        async def query() -> None:
            flow = await api.collections.create(test.client_id, ARTIFACT)
            done = await api.collections.wait(flow.flow_id, timeout=limits["query"])
            if done.state != "Finished" or not done.rows:
                raise RuntimeError(f"the collection ended {done.state} with {done.rows} rows")

        async def cleanup() -> None:
            await agent.stop()
            if test.client_id:
                with contextlib.suppress(NotFound):  # it never enrolled
                    await api.clients.delete(test.client_id, force=True)

        try:
            steps = [("readyz", test.readyz), ("agent", handshake), ("api", status),
                     ("query", query)]  # fmt: skip
            for name, body in steps:
                if not await test.check(name, body, limits[name]):
                    break
        finally:
            await test.check("cleanup", cleanup, limits["cleanup"])
            await api.close()
    for name in CHECKS:
        run.checks.setdefault(name, "not run")
    return run
