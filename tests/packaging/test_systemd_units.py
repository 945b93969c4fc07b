"""The units pass ``systemd-analyze verify``, and harden what each service can spare.

``verify`` checks that the programs a unit starts exist, so it runs against a root made by the
test: the host's own unit files (targets the units name) and the units' programs as stubs at
their packaged paths (``/opt/peregrine/...``). Any message it prints fails the test: a
misspelt directive or a bad value is only a warning to systemd.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.packaging.units import AGENT, FRONTEND, directives, executables

SYSTEM_UNITS = Path("/lib/systemd/system")


def verify_root(tmp_path: Path) -> Path:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: apt-get install systemd"
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in (AGENT, FRONTEND):
        shutil.copy(unit, units)
        for program in executables(unit):
            stub = root / program.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = verify_root(tmp_path)
    done = verify(root, "peregrine-agent.service", "peregrine-frontend@a.service")
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_catches_a_bad_directive(tmp_path: Path) -> None:
    """What the first test relies on: a wrong value is reported."""
    root = verify_root(tmp_path)
    unit = root / "etc/systemd/system/peregrine-agent.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    done = verify(root, "peregrine-agent.service")
    assert "Failed to parse protect system value" in done.stderr


def test_the_frontend_template_reads_its_instances_configuration() -> None:
    unit = directives(FRONTEND)
    assert "--config /etc/peregrine/frontend-%i.yaml" in unit["Service"]["ExecStart"]
    assert unit["Unit"]["ConditionPathExists"] == "/etc/peregrine/frontend-%i.yaml"
    # Longer than the drain (drain.timeout, 30 s): systemd must not kill a draining frontend.
    assert float(unit["Service"]["TimeoutStopSec"]) > 30


def test_the_frontend_is_confined_to_its_data() -> None:
    service = directives(FRONTEND)["Service"]
    assert service["User"] == "peregrine"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/peregrine"
    for directive in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert service[directive] == "yes", directive
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"


def test_the_agent_reads_the_host_and_writes_only_its_state() -> None:
    service = directives(AGENT)["Service"]
    assert "User" not in service  # root: it reads every file and process
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/peregrine/agent"
    assert "--state-dir /var/lib/peregrine/agent" in service["ExecStart"]
    # Temporary files (SQLite's sorts, Python's) in its state, not in the host's read-only /tmp.
    assert "TMPDIR=/var/lib/peregrine/agent/tmp" in service["Environment"].split()
    assert "peregrine/agent/tmp" in service["StateDirectory"].split()
    assert service["NoNewPrivileges"] == "yes"
    # What reading the host needs stays: homes, /tmp, devices.
    for directive in ("ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert directive not in service, directive
    bounded = set(service["CapabilityBoundingSet"].split())
    assert bounded == {"CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_SYS_PTRACE", "CAP_KILL"}
