"""The agent process stays lean: it never imports what only the server, the other commands or the
query worker need, neither when it starts nor after it ran a collection.

Each test runs a fresh interpreter (this one has imported everything) and reads its
``sys.modules``. Measured on Linux, Python 3.11 (``benchmarks/bench_agent_footprint.py``): idle
RSS of ``peregrine agent`` 67 MB with Typer, Rich and the plugins loaded; 51 MB without; 46.6 MB
without SQLite's engine (apsw), psutil and ``cryptography.x509`` too; 37.4 MB with the identity on
PyNaCl rather than cryptography (whose Rust library kept 7.6 MB resident).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec

from peregrine.artifacts.loader import parse_artifacts
from peregrine.engine.context import ALL_PERMISSIONS
from peregrine.protocol.messages import ArtifactCall, CollectionRequest, encode

#: Never in the agent process. Command line: Typer, Rich and pydantic (Typer's parsers); the
#: server and API stacks; the query plugins and their libraries, and the query engine with
#: SQLite (apsw), which run in query workers; cryptography altogether: the PKI that creates
#: deployments (the agent pins its CA with the standard ``ssl`` module) and Ed25519 (the agent's
#: identity is PyNaCl's).
NEVER = (
    "typer",
    "rich",
    "click",
    "pydantic",
    "sqlalchemy",
    "alembic",
    "fastapi",
    "httpx",
    "argon2",
    "pyarrow",
    "duckdb",
    "prometheus_client",  # the agent's metrics file is written by hand
    "peregrine.analysis",
    "pluggy",
    "yara",
    "peregrine.plugins",
    "peregrine.plugin_manager",
    "peregrine.server",
    "peregrine.datastore",
    "peregrine.api",
    "peregrine.cli.full_app",
    "apsw",
    "peregrine.engine.executor",
    "peregrine.engine.vtable",
    "cryptography",
    "peregrine.config.generate",
    "peregrine.config.pki",
)
#: Not imported until the first collection arrives.
NOT_WHILE_IDLE = (
    "peregrine.engine",
    "peregrine.artifacts",
    "peregrine.agent.collection",
)


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def run_python(code: str, cwd: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_agent_command_imports_only_the_agent(tmp_path: Path) -> None:
    """``peregrine agent --config ...`` through the console script's entry point, up to reading
    its configuration (a missing file here: exit code 1 right after the agent is imported)."""
    code = f"""
import json, sys
sys.argv = ["peregrine", "agent", "--config", {str(tmp_path / "absent.yaml")!r}]
from peregrine.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
import peregrine.agent.agent  # imported by the command before it reads the configuration
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""
    result = run_python(code, tmp_path)
    assert result["code"] == 1
    modules = result["modules"]
    assert isinstance(modules, list)
    assert "peregrine.agent.agent" in modules
    assert loaded(modules, NEVER + NOT_WHILE_IDLE) == []


ARTIFACTS = """
name: Test.Lean.Holds
type: CLIENT
precondition: SELECT 1 FROM info()
sources:
  - query: SELECT hostname FROM info()
---
name: Test.Lean.Skipped
type: CLIENT
precondition: SELECT 1 FROM info() WHERE os = 'no-such-os'
sources:
  - query: SELECT hostname FROM info()
"""


def test_a_collection_runs_its_queries_and_preconditions_in_workers(tmp_path: Path) -> None:
    """A collection with preconditions (one holds, one does not) gives the right results, and
    the agent's process (its identity loaded and used first, as the agent does) has loaded
    neither the query plugins, SQLite's engine nor cryptography afterwards, nor psutil (the
    watchdog needs it only for a CPU or memory limit, and this collection has none)."""
    definitions, problems = parse_artifacts(ARTIFACTS, "test")
    assert problems == []
    request = CollectionRequest(
        flow_id="F.lean",
        artifacts=[ArtifactCall(name=d.artifact.name) for d in definitions],
        definitions=[msgspec.to_builtins(d.artifact) for d in definitions],
        permissions=sorted(ALL_PERMISSIONS),
        timeout=60,
    )
    (tmp_path / "request.bin").write_bytes(encode(request))
    code = """
import json, sys
from pathlib import Path
from peregrine.agent.collection import CollectionJob
from peregrine.agent.identity import load_or_create
from peregrine.agent.spool import Spool
from peregrine.protocol.messages import decode_from_agent, decode_from_server

load_or_create(Path("writeback.yaml")).sign(b"challenge")
request = decode_from_server(Path("request.bin").read_bytes())
spool = Spool(Path("spool.db"))
spool.start_flow(request.flow_id, b"")
CollectionJob(request, spool, Path("flows"), lambda: None, lambda flow: True).run()
messages = [decode_from_agent(item.payload) for item in spool.pending()]
out = {
    "sources": {m.artifact: m.status for m in messages if type(m).__name__ == "SourceFinished"},
    "rows": sum(len(m.rows) for m in messages if type(m).__name__ == "ResultBatch"),
    "flow": [m.status for m in messages if type(m).__name__ == "FlowFinished"],
    "modules": sorted(sys.modules),
}
print(json.dumps(out))
"""
    result = run_python(code, tmp_path)
    assert result["sources"] == {"Test.Lean.Holds": "finished", "Test.Lean.Skipped": "skipped"}
    assert result["rows"] == 1
    assert result["flow"] == ["finished"]
    modules = result["modules"]
    assert isinstance(modules, list)
    assert loaded(modules, NEVER) == []
    assert "psutil" not in modules


def test_the_lazy_exports_of_the_configuration_package() -> None:
    """``peregrine.config`` leaves out what creates deployments until it is asked for; then every
    name is the object of its module (``generate`` the function, not the module of that name)."""
    code = """
import json, sys
import peregrine.config
from peregrine.config import ClientConfig, client_ssl_context, load_client_config
before = sorted(m for m in sys.modules if m.startswith(("cryptography.x509", "peregrine.config.")))
from peregrine.config import generate, write_client_config
module = sys.modules["peregrine.config.generate"]
print(json.dumps({
    "before": before,
    "function": generate is module.generate and callable(generate),
    "attribute": peregrine.config.generate is module.generate,
    "other": write_client_config is module.write_client_config,
    "x509": "cryptography.x509" in sys.modules,
}))
"""
    result = run_python(code, Path.cwd())
    assert result == {
        "before": ["peregrine.config.files", "peregrine.config.model", "peregrine.config.tls"],
        "function": True,
        "attribute": True,
        "other": True,
        "x509": True,
    }


def test_the_identity_is_made_read_and_used_without_cryptography(tmp_path: Path) -> None:
    """First start (a new key written), the next (read back) and signing a challenge leave
    cryptography out of the agent's process: PyNaCl (libsodium) does it all."""
    code = """
import json, sys
from pathlib import Path
from peregrine.agent.identity import load_or_create
made = load_or_create(Path("writeback.yaml"))
read = load_or_create(Path("writeback.yaml"))
print(json.dumps({
    "same": read.client_id == made.client_id and read.sign(b"x") == made.sign(b"x"),
    "modules": sorted(sys.modules),
}))
"""
    result = run_python(code, tmp_path)
    assert result["same"] is True
    modules = result["modules"]
    assert isinstance(modules, list)
    assert loaded(modules, ("cryptography",)) == []
    assert "nacl.signing" in modules
