"""A real server (API on HTTPS) and a real agent, running in a background thread with their own
event loop, so that synchronous code — the sync client, the CLI — can call them from the test.

``live`` is session-wide: starting a deployment costs seconds. Tests must not assume they are
alone on it (count their own hunts, not all hunts).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peregrine.agent.agent import Agent
from peregrine.artifacts.loader import builtin_files
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.client import AsyncPeregrine, Peregrine
from peregrine.config import GeneratedConfig
from peregrine.server.app import Server
from tests.server.harness import agent_config, make_deployment, running_agent, wait_until

TEST_ARTIFACTS = """\
name: Test.Numbers
description: Deterministic rows, N of them.
parameters:
  - {name: N, type: int, default: 10, description: How many rows.}
sources:
  - name: numbers
    query: |
      WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :N)
      SELECT n, printf('row %08d', n) AS label FROM c
---
name: Test.Upload
description: Uploads one file.
parameters:
  - {name: Path, type: string, description: The file.}
sources:
  - query: SELECT upload(:Path) AS stored
"""


def repository() -> ArtifactRepository:
    repo = ArtifactRepository()
    repo.load_texts(builtin_files())
    repo.load_texts([("test.yaml", TEST_ARTIFACTS)])
    assert not [p for p in repo.problems if p.severity == "error"]
    return repo


@dataclass
class Live:
    """The running deployment, seen from the test's thread."""

    deployment: GeneratedConfig
    server: Server
    agent: Agent
    loop: asyncio.AbstractEventLoop
    directory: Path
    admin_token: str
    reader_token: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.api_port}"

    @property
    def ca_cert(self) -> str:
        return str(self.deployment.server.ca_cert_path)

    @property
    def client_id(self) -> str:
        return self.agent.client_id

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop (server.collect, ...)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, token: str | None = None, **options: Any) -> Peregrine:
        return Peregrine(self.url, token or self.admin_token, ca_cert=self.ca_cert, **options)

    def async_client(self, token: str | None = None) -> AsyncPeregrine:
        return AsyncPeregrine(self.url, token or self.admin_token, ca_cert=self.ca_cert)

    def env(self, token: str | None = None) -> dict[str, str]:
        """The environment a CLI run needs to reach this server."""
        return {
            "PEREGRINE_URL": self.url,
            "PEREGRINE_TOKEN": token or self.admin_token,
            "PEREGRINE_CA_CERT": self.ca_cert,
        }

    def user(self, name: str, roles: list[str]) -> str:
        """A new user with ``roles``; its API token."""
        self.server.accounts.create_user(name, None, roles)
        return self.server.accounts.create_token(name, "test").token


def _serve(directory: Path, ready: queue.Queue[Any]) -> None:
    async def main() -> None:
        deployment = make_deployment(directory / "deploy")
        server = Server(deployment.server, repository=repository())
        await server.start()
        try:
            config = agent_config(deployment, directory / "host")
            async with running_agent(config) as agent:
                await wait_until(
                    lambda: (c := server.datastore.clients.get(agent.client_id)) and c.interrogated
                )
                stop = asyncio.Event()
                ready.put((deployment, server, agent, asyncio.get_running_loop(), stop))
                await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except BaseException as exc:
        ready.put(exc)


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory = tmp_path_factory.mktemp("live")
    ready: queue.Queue[Any] = queue.Queue()
    thread = threading.Thread(target=_serve, args=(directory, ready), name="live-server")
    thread.start()
    started = ready.get(timeout=90)
    if isinstance(started, BaseException):
        thread.join(30)
        raise started
    deployment, server, agent, loop, stop = started
    server.accounts.create_user("admin", None, ["administrator"])
    server.accounts.create_user("reader", None, ["reader"])
    live = Live(
        deployment=deployment,
        server=server,
        agent=agent,
        loop=loop,
        directory=directory,
        admin_token=server.accounts.create_token("admin", "test").token,
        reader_token=server.accounts.create_token("reader", "test").token,
    )
    try:
        yield live
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        if not ready.empty() and isinstance(error := ready.get(), BaseException):
            raise error


@pytest.fixture
def client(live: Live) -> Iterator[Peregrine]:
    with live.client() as peregrine:
        yield peregrine


@pytest.fixture
def no_connection_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CLI test reaches the live server only through the settings it passes: none from the
    environment, and no local login (one a server on this machine may have written)."""
    for name in ("PEREGRINE_URL", "PEREGRINE_TOKEN", "PEREGRINE_CA_CERT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PEREGRINE_DATA_DIR", str(tmp_path / "no-server-here"))
