"""Shared fixtures: a real query engine with every built-in plugin, a helper to run SQL, and the
real services of the distributed mode (a Redis server, a PostgreSQL database of a test's own)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from peregrine.cluster import processes
from peregrine.engine import Engine, QueryLimits


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Take out the log handlers a test's in-process command installed: ``peregrine server`` or
    ``agent`` run through typer's CliRunner configure logging to the runner's captured stream,
    which is closed once that test ends, and every later log line would print a "Logging
    error" traceback."""
    from peregrine.logcontext import ContextFilter
    from peregrine.logformat import QUIET_LIBRARIES

    root = logging.getLogger()
    level = root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for handler in list(root.handlers):
        if any(isinstance(f, ContextFilter) for f in handler.filters):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def query(engine: Engine) -> Callable[..., list[dict[str, Any]]]:
    """Run SQL for real and return the rows as dicts (column name -> value)."""

    def run(sql: str, params: Any = None, **limits: Any) -> list[dict[str, Any]]:
        result = engine.execute(sql, params, limits=QueryLimits(**limits))
        names = [c.name for c in result.columns]
        return [dict(zip(names, row, strict=True)) for row in result]

    return run


# -- real services for the distributed mode ---------------------------------------------------

POSTGRES_URL_VARIABLE = "PEREGRINE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "PEREGRINE_REQUIRE_POSTGRES"
REQUIRE_REDIS_VARIABLE = "PEREGRINE_REQUIRE_REDIS"


def _unavailable(variable: str, reason: str) -> NoReturn:
    """Skip, or fail when the test run says the service must be there (CI)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class RedisServer:
    """A throw-away ``redis-server`` on a loopback port, that a test can stop and restart."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = processes.free_port()  # below the kernel's range: restarts find it free
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.output()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def output(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis server of the test's own (Debian's ``redis-server``)."""
    executable = shutil.which("redis-server")
    if executable is None:
        _unavailable(REQUIRE_REDIS_VARIABLE, "redis-server is missing (apt install redis-server)")
    server = RedisServer(executable, tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on the test server, dropped after."""
    from sqlalchemy import create_engine, make_url, text

    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        _unavailable(
            REQUIRE_POSTGRES_VARIABLE,
            f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (./scripts/test starts one)",
        )
    admin = create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    name = f"peregrine_test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
