"""The agent package's own environment holds only what an endpoint needs (``[tool.peregrine]
agent-dependencies``), and that is enough: an agent run from the package's files, with none of
this test's environment, enrolls with a real server over TLS and answers collections that use
every kind of plugin (host facts, processes, users, files, hashes and YARA)."""

from __future__ import annotations

import hashlib
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from peregrine.config import write_client_config
from tests.packaging.conftest import REPO, run
from tests.server.harness import (
    Process,
    agent_config,
    api_client,
    first_client,
    make_deployment,
    served,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # the build, then about a minute

#: Built-in artifacts that between them load every family of query plugins (YARA through the
#: file finder: a YARA scan of every process, or every socket of a machine running load tests,
#: takes minutes on a loaded machine).
ARTIFACTS = [
    {"name": "Generic.Client.Info"},
    {"name": "Generic.System.Pslist"},
    {"name": "Linux.Sys.Users"},
    {"name": "Generic.Files.Finder"},  # over a folder of the test's, hashed (below)
]
RULE = 'rule evidence { strings: $a = "something" condition: $a }'
#: Server-side libraries an endpoint must not carry.
SERVER_ONLY = ("duckdb", "pyarrow", "fastapi", "sqlalchemy", "uvicorn", "prometheus_client")


def test_the_agent_environment_holds_only_the_agents_dependencies(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    run("dpkg-deb", "-x", str(debs["peregrine-agent"]), str(tmp_path))
    python = str(tmp_path / "opt/peregrine/agent/bin/python")
    for module in SERVER_ONLY:
        probe = f"import importlib.util as u; print(u.find_spec({module!r}) is None)"
        assert run(python, "-I", "-c", probe).strip() == "True", f"{module} is in the agent"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "msgspec" in project["tool"]["peregrine"]["agent-dependencies"]
    installed = int(run("dpkg-deb", "-f", str(debs["peregrine-agent"]), "Installed-Size"))
    server = int(run("dpkg-deb", "-f", str(debs["peregrine-server"]), "Installed-Size"))
    assert installed < server / 3, (installed, server)  # KiB: the agent is the small one


def test_an_agent_from_the_package_enrolls_and_answers_every_kind_of_query(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    run("dpkg-deb", "-x", str(debs["peregrine-agent"]), str(tmp_path / "pkg"))
    python = [str(tmp_path / "pkg/opt/peregrine/agent/bin/python"), "-I"]
    deployment = make_deployment(tmp_path / "deploy")
    home = tmp_path / "files"
    home.mkdir()
    (home / "evidence.txt").write_text("something to hash\n")
    config_path = tmp_path / "client.yaml"
    write_client_config(agent_config(deployment, tmp_path / "agent"), config_path)
    agent = Process(["agent", "--config", str(config_path)], tmp_path / "agent.log", python)
    with served(deployment, tmp_path / "server.log") as (_, token):
        agent.start()
        try:
            with api_client(deployment, token) as api:
                client_id = first_client(api, agent)
                calls = [
                    {**call, "parameters": {"PathGlob": [f"{home}/**"], "Hash": True,
                                            "YaraRule": RULE}}
                    if call["name"] == "Generic.Files.Finder"
                    else call
                    for call in ARTIFACTS
                ]  # fmt: skip
                created = api.post(
                    "/collections", json={"client_id": client_id, "artifacts": calls}
                )
                assert created.status_code == 201, created.text
                flow = wait_finished(api, created.json()["flow_id"], agent)
                rows = {
                    f"{name}/{source}": api.get(
                        f"/collections/{flow['flow_id']}/results",
                        params={"artifact": name, "source": source},
                    ).json()["rows"]
                    for name, source in (key.split("/", 1) for key in result_sets(flow))
                }
        finally:
            agent.stop()
    assert flow["state"] == "Finished" and not flow["error"], flow
    for name in ("Generic.Client.Info/host", "Generic.System.Pslist/", "Linux.Sys.Users/"):
        assert rows[name], f"{name} gave no rows: {agent.output()[-3000:]}"
    found = rows["Generic.Files.Finder/"]
    assert [(Path(r["path"]).name, r["sha256"], r["yara_rules"]) for r in found] == [
        ("evidence.txt", hashlib.sha256(b"something to hash\n").hexdigest(), '["evidence"]')
    ], found
    assert {s["status"] for s in flow["sources"].values()} == {"finished"}, flow["sources"]
    assert "ModuleNotFoundError" not in agent.output()


def wait_finished(api: httpx.Client, flow_id: str, agent: Process) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        flow: dict[str, Any] = api.get(f"/collections/{flow_id}").json()
        if flow["state"] not in ("Scheduled", "In progress", "Running"):
            return flow
        assert time.monotonic() < deadline, f"not finished: {flow} {agent.output()[-3000:]}"
        time.sleep(0.3)


def result_sets(flow: dict[str, Any]) -> list[str]:
    """ "Artifact/source" of each result set of a finished collection."""
    sources = flow["sources"]
    assert isinstance(sources, dict)
    return [key if "/" in key else f"{key}/" for key in sources]
