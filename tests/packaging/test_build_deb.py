"""scripts/build-deb makes peregrine-server and peregrine-agent: their contents and maintainer
scripts (dpkg-deb -c/-I), lintian's verdict, a Python environment that runs from the package's
files, and an installation into a root the test makes (``dpkg --root``, the maintainer scripts
run with ``DPKG_ROOT``): the user, the directories and their modes, the agent enabled at boot
when a client configuration is present, and removal taking it out again.

Not tested here: a boot of that root (no systemd runs in it, so the agent is enabled but not
started, and does not enroll); ``debootstrap`` needs a Debian mirror, which a test cannot
count on.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.packaging.conftest import run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # build ~2 min, lintian ~4 min each


def contents(deb: Path) -> dict[str, str]:
    """Each path in the package and its ls-style mode column."""
    listing = run("dpkg-deb", "-c", str(deb)).splitlines()
    return {line.split()[5].removeprefix("."): line.split()[0] for line in listing}


def test_the_packages_hold_an_environment_units_and_scripts(debs: dict[str, Path]) -> None:
    server, agent = contents(debs["peregrine-server"]), contents(debs["peregrine-agent"])
    assert "/opt/peregrine/server/bin/peregrine" in server
    assert "/lib/systemd/system/peregrine-frontend@.service" in server
    assert server["/usr/bin/peregrine"].startswith("l")  # -> /opt/peregrine/server/bin
    assert "/opt/peregrine/agent/bin/peregrine" in agent
    assert "/lib/systemd/system/peregrine-agent.service" in agent
    assert not [p for p in agent if p.startswith("/opt/peregrine/server")]
    # Compiled libraries are not executable, programs are.
    sos = [mode for path, mode in server.items() if path.endswith(".so")]
    assert sos and all(mode.startswith("-rw-r--r--") for mode in sos)
    assert server["/opt/peregrine/server/bin/peregrine"].startswith("-rwxr-xr-x")

    info = run("dpkg-deb", "-I", str(debs["peregrine-agent"]))
    assert "Package: peregrine-agent" in info and "Depends: python3 (>= 3.11)" in info
    postinst = run("dpkg-deb", "-I", str(debs["peregrine-agent"]), "postinst")
    assert "systemctl enable peregrine-agent.service" in postinst
    assert "/etc/peregrine/client.yaml" in postinst
    prerm = run("dpkg-deb", "-I", str(debs["peregrine-agent"]), "prerm")
    assert "systemctl stop peregrine-agent.service" in prerm
    postinst = run("dpkg-deb", "-I", str(debs["peregrine-server"]), "postinst")
    assert "useradd" in postinst and "install -d -m 0750" in postinst


def test_the_environment_runs_from_the_packages_files(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    run("dpkg-deb", "-x", str(debs["peregrine-agent"]), str(tmp_path))
    python = tmp_path / "opt/peregrine/agent/bin/python"
    env = {"PATH": "/usr/bin:/bin"}  # nothing of this test's environment
    out = run(str(python), "-I", "-m", "peregrine", "agent", "--help", env=env)
    assert "--state-dir" in out
    where = run(str(python), "-I", "-c", "import peregrine; print(peregrine.__file__)", env=env)
    assert where.startswith(str(tmp_path / "opt/peregrine/agent/lib"))
    # Scripts point at the installed path; bytecode was compiled for it.
    script = (tmp_path / "opt/peregrine/agent/bin/peregrine").read_text().splitlines()[0]
    assert script == "#!/opt/peregrine/agent/bin/python"


def test_lintian_finds_no_error(debs: dict[str, Path]) -> None:
    assert shutil.which("lintian"), "lintian is missing: apt-get install lintian"

    def lintian(deb: Path) -> str:
        done = subprocess.run(
            ["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True
        )
        return done.stdout + done.stderr

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lintian, debs.values()))
    errors = [line for report in reports for line in report.splitlines() if line.startswith("E:")]
    assert errors == []


def new_root(tmp_path: Path) -> Path:
    """An empty root with a dpkg database and the accounts files useradd edits."""
    root = tmp_path / "root"
    for directory in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc", "var/log"):
        (root / directory).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    shutil.copy("/etc/login.defs", root / "etc/login.defs")
    return root


def dpkg(root: Path, *args: str) -> str:
    # Dependencies (python3, systemd) are the host's, not the empty root's.
    return run("dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", *args)


def test_install_into_a_new_root_and_remove(debs: dict[str, Path], tmp_path: Path) -> None:
    root = new_root(tmp_path)
    dpkg(root, "-i", str(debs["peregrine-server"]))
    passwd = (root / "etc/passwd").read_text().splitlines()
    [user] = [line for line in passwd if line.startswith("peregrine:")]
    name, _, uid, gid, _, home, shell = user.split(":")
    assert (name, home, shell) == ("peregrine", "/var/lib/peregrine", "/usr/sbin/nologin")
    data, etc = (root / "var/lib/peregrine").stat(), (root / "etc/peregrine").stat()
    assert (data.st_uid, data.st_gid, stat.S_IMODE(data.st_mode)) == (int(uid), int(gid), 0o750)
    assert (etc.st_uid, etc.st_gid, stat.S_IMODE(etc.st_mode)) == (0, int(gid), 0o750)
    assert os.readlink(root / "usr/bin/peregrine") == "/opt/peregrine/server/bin/peregrine"

    client = root / "etc/peregrine/client.yaml"
    client.write_text("server_urls: [wss://frontend.example:8443/agent]\n")
    client.chmod(0o644)
    out = dpkg(root, "-i", str(debs["peregrine-agent"]))
    wanted = root / "etc/systemd/system/multi-user.target.wants/peregrine-agent.service"
    assert os.readlink(wanted) == "/lib/systemd/system/peregrine-agent.service", out
    assert stat.S_IMODE(client.stat().st_mode) == 0o600  # the enrollment secret
    state = (root / "var/lib/peregrine/agent").stat()
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (0, 0o700)

    dpkg(root, "-r", "peregrine-agent")
    assert not wanted.exists() and not wanted.is_symlink()  # no longer started at boot
    assert not (root / "opt/peregrine/agent").exists()
    assert (root / "var/lib/peregrine/agent").is_dir()  # kept until a purge
    dpkg(root, "--purge", "peregrine-agent")
    assert not (root / "var/lib/peregrine/agent").exists()
    dpkg(root, "-r", "peregrine-server")
    assert not (root / "opt/peregrine/server").exists()
    assert (root / "var/lib/peregrine").is_dir()  # the deployment's data stays


def test_without_a_client_configuration_the_agent_is_not_enabled(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    root = new_root(tmp_path)
    out = dpkg(root, "-i", str(debs["peregrine-agent"]))
    assert "no /etc/peregrine/client.yaml" in out
    assert not (root / "etc/systemd/system/multi-user.target.wants").exists()
