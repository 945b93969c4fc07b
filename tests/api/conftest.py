"""A real server (HTTPS API) with real agents, running on a background event loop so that
synchronous tests can call the API with an ordinary HTTP client, as a script would.

``Live`` owns one deployment: its server (with the built-in artifacts and a few test ones),
its agents, a user and API token per role, and fixtures that endpoints need (a finished
collection with results and an upload, a hunt).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import ssl
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from peregrine.agent.agent import Agent
from peregrine.auth.roles import ROLES
from peregrine.server.app import Server
from peregrine.services.hunts import HuntSpec
from tests.server.harness import (
    agent_config,
    make_deployment,
    repository_with,
    running_agent,
    running_server_with,
    wait_until,
)

T = TypeVar("T")

API = "/api/v1"
PASSWORD = "correct horse battery staple"

TEST_ARTIFACTS = """\
name: Test.Numbers
description: Deterministic rows, N of them.
parameters:
  - {name: N, type: int, default: 10, description: How many rows.}
sources:
  - query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, printf('row %08d', n) AS label FROM c
---
name: Test.Upload
description: Uploads one file.
parameters:
  - {name: Path, type: string, description: The file.}
sources:
  - query: SELECT upload(:Path) AS stored
---
name: Test.Ticks
description: An event artifact for alert rules (a row each minute).
type: CLIENT_EVENT
sources:
  - query: SELECT tick, time, utc FROM clock(60)
"""


class Live:
    """A running deployment; ``run`` executes a coroutine on its loop from a test thread."""

    def __init__(self, root: Path, agents: int = 1, **server_changes: Any) -> None:
        self.root = root
        self.deployment = make_deployment(root / "deploy")
        if server_changes:
            server = msgspec.structs.replace(self.deployment.server, **server_changes)
            self.deployment = dataclasses.replace(self.deployment, server=server)
        self.ca = str(self.deployment.server.ca_cert_path)
        self.tls = ssl.create_default_context(cafile=self.ca)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-server")
        self._thread.daemon = True
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.agents: list[Agent] = []
        try:
            self.run(self._start(agents), timeout=120)
        except BaseException:
            self.close()
            raise
        self.tokens = {role: self.make_user(f"{role}-user", [role]) for role in ROLES}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self, agents: int) -> None:
        repository = repository_with(TEST_ARTIFACTS)
        self.server: Server = await self._stack.enter_async_context(
            running_server_with(self.deployment.server, repository)
        )
        for i in range(agents):
            config = agent_config(self.deployment, self.root / f"agent{i}")
            self.agents.append(await self._stack.enter_async_context(running_agent(config)))
        for agent in self.agents:
            await self.interrogated(agent.client_id)

    async def interrogated(self, client_id: str) -> None:
        server = self.server
        await wait_until(
            lambda: (c := server.datastore.clients.get(client_id)) and c.interrogated, 60
        )
        await wait_until(lambda: server.hunts.index.clients.get(client_id), 10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._stack.aclose(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    # -- helpers for tests ---------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.api_port}"

    @property
    def client_id(self) -> str:
        return self.agents[0].client_id

    def make_user(self, name: str, roles: list[str], password: str | None = None) -> str:
        """A new user with ``roles``; returns an API token of theirs."""
        self.server.accounts.create_user(name, password, roles)
        return self.server.accounts.create_token(name, "test").token

    def http(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.base + API, verify=self.tls, headers=headers, timeout=60, **kwargs
        )

    def collect(self, artifact: str, parameters: dict[str, Any] | None = None) -> str:
        """A finished collection on the first agent (made directly, not through the API)."""

        async def go() -> str:
            flow = await self.server.collect(self.client_id, [(artifact, parameters or {})], "t")
            done = await self.server.wait_for_flow(
                flow.flow_id, ["Finished", "Error", "Cancelled"], 90
            )
            assert done.state == "Finished", done
            return done.flow_id

        return self.run(go())


@contextlib.contextmanager
def live_deployment(root: Path, agents: int = 1, **server_changes: Any) -> Iterator[Live]:
    """A deployment of its own; ``server_changes`` replace fields of its server configuration."""
    live = Live(root, agents, **server_changes)
    try:
        yield live
    finally:
        live.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One deployment shared by the API behaviour tests (they make their own users/objects)."""
    with live_deployment(tmp_path_factory.mktemp("api-live")) as deployment:
        yield deployment


_serial = itertools.count()


@dataclass
class Objects:
    """What API requests of the tests refer to, made once; requests that change an object
    make a fresh one per call (``fresh_hunt``, ``fresh_user``)."""

    live: Live
    client_id: str
    flow_id: str
    upload_id: str
    hunt_id: str

    def fresh_hunt(self, start: bool = False) -> str:
        """A hunt that matches no client (it runs nowhere, whatever happens to it)."""

        async def go() -> str:
            hunts = self.live.server.hunts
            hunt = await hunts.create(
                HuntSpec(artifacts=[("Test.Numbers", {"N": 1})], include_labels=["nobody"]),
                creator="matrix",
            )
            if start:
                await hunts.start(hunt.hunt_id)
            return hunt.hunt_id

        return self.live.run(go())

    def fresh_alert(self) -> int:
        """An open alert raised on the first client (straight into the datastore)."""
        n = next(_serial)
        [alert] = self.live.server.datastore.alerts.raise_many(
            [
                {
                    "alert_key": f"matrix|{n}",
                    "rule_id": "Test.Matrix",
                    "rule_version": 1,
                    "severity": "low",
                    "time": 1.0,
                    "summary": "raised by the permission tests",
                    "client_id": self.client_id,
                    "rows": [{"n": n}],
                }
            ]
        )
        return alert.alert_id

    def fresh_user(self) -> str:
        name = f"target-{next(_serial)}"
        self.live.server.accounts.create_user(name, None, ["reader"])
        return name


@pytest.fixture(scope="session")
def objects(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Objects:
    """A finished collection with an upload, a finished (stopped) hunt with rows, and a user
    ``matrix-login`` with a password, on the shared deployment."""
    server = live.server
    live.make_user("matrix-login", ["reader"], password=PASSWORD)
    data = tmp_path_factory.mktemp("objects") / "evidence.bin"
    data.write_bytes(b"evidence " * 1000)
    flow_id = live.collect("Test.Upload", {"Path": str(data)})
    [upload] = server.filestore.uploads(live.client_id, flow_id)

    async def run_hunt() -> str:
        hunt = await server.hunts.create(
            HuntSpec(artifacts=[("Test.Numbers", {"N": 3})]), creator="matrix"
        )
        await server.hunts.start(hunt.hunt_id)
        await wait_until(lambda: server.datastore.hunts.stats(hunt.hunt_id).finished >= 1, 60)
        # Stopped: its live event stream ends at once.
        await server.hunts.stop(hunt.hunt_id)
        return hunt.hunt_id

    return Objects(live, live.client_id, flow_id, upload.upload_id, live.run(run_hunt()))
