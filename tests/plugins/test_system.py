"""kernel_modules(), services() and packages(): the live system, and real fixture files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from peregrine.plugins.system import parse_list_units_plain, parse_rpm_line, systemd_running

# ----------------------------------------------------------------------------- kernel_modules

PROC_MODULES = """\
nf_tables 286720 3 nft_chain_nat,nft_compat, Live 0xffffffffc0a00000
vboxdrv 5566464 2 vboxnetadp, Live 0x0000000000000000 (OE)
loop 36864 0 - Loading 0x0000000000000000
"""


def test_kernel_modules_parse_a_proc_modules_file(query, tmp_path):
    path = tmp_path / "modules"
    path.write_text(PROC_MODULES)
    rows = query(
        "SELECT name, size, refcount, used_by, state, address, taint FROM kernel_modules(?)",
        (str(path),),
    )
    assert rows == [
        {
            "name": "nf_tables",
            "size": 286720,
            "refcount": 3,
            "used_by": '["nft_chain_nat", "nft_compat"]',
            "state": "Live",
            "address": "0xffffffffc0a00000",
            "taint": None,
        },
        {
            "name": "vboxdrv",
            "size": 5566464,
            "refcount": 2,
            "used_by": '["vboxnetadp"]',
            "state": "Live",
            "address": "0x0000000000000000",
            "taint": "OE",
        },
        {
            "name": "loop",
            "size": 36864,
            "refcount": 0,
            "used_by": "[]",
            "state": "Loading",
            "address": "0x0000000000000000",
            "taint": None,
        },
    ]


def test_kernel_modules_skip_garbage_lines_with_a_warning(engine, tmp_path):
    path = tmp_path / "modules"
    path.write_text("not a module line\n" + PROC_MODULES)
    result = engine.execute("SELECT name FROM kernel_modules(?)", (str(path),))
    assert [r[0] for r in result] == ["nf_tables", "vboxdrv", "loop"]
    assert any("cannot parse" in w for w in result.warnings)


def test_kernel_modules_of_a_missing_file_are_none(query, tmp_path):
    assert query("SELECT * FROM kernel_modules(?)", (str(tmp_path / "nope"),)) == []


@pytest.mark.skipif(not Path("/proc/modules").exists(), reason="/proc/modules does not exist")
def test_kernel_modules_are_the_live_ones(query):
    lines = Path("/proc/modules").read_text().splitlines()
    rows = query("SELECT name, size, version FROM kernel_modules()")
    assert [r["name"] for r in rows] == [line.split()[0] for line in lines]
    for row in rows:
        version = Path("/sys/module") / row["name"] / "version"
        assert row["version"] == (version.read_text().strip() if version.exists() else None)


# ----------------------------------------------------------------------------------- services


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def image(tmp_path):
    """A system image: units in /usr/lib (reached also by an absolute /lib link), links in /etc."""
    root = tmp_path / "image"
    lib = root / "usr/lib/systemd/system"
    etc = root / "etc/systemd/system"
    _write(
        lib / "web.service",
        "# a comment\n[Unit]\nDescription=Web server\n\n[Service]\n"
        "ExecStart=/usr/bin/web --port 80\nUser=www\n\n[Install]\nWantedBy=multi-user.target\n",
    )
    _write(
        lib / "web.service.d/10-port.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/web -p 8080\n",
    )
    _write(
        lib / "helper.service",
        "[Unit]\nDescription=Helper\n[Service]\nType=oneshot\n"
        "ExecStart=/bin/sh -c \\\n    'echo hi'\nExecStart=/bin/true\n",
    )
    _write(
        lib / "getty@.service",
        "[Unit]\nDescription=Getty on %I\n[Install]\nWantedBy=getty.target\n",
    )
    _write(lib / "old.service", "[Unit]\nDescription=Old\n[Install]\nWantedBy=multi-user.target\n")
    _link(lib / "www.service", "web.service")
    _write(lib / "notes.txt", "not a unit\n")
    _link(root / "lib", "/usr/lib")  # absolute: must resolve inside the image, not on this host
    _link(etc / "multi-user.target.wants/web.service", "/usr/lib/systemd/system/web.service")
    _link(etc / "getty.target.wants/getty@tty1.service", "/lib/systemd/system/getty@.service")
    _link(etc / "old.service", "/dev/null")
    _write(
        etc / "local.service",
        "[Unit]\nDescription=Local\n[Service]\nExecStart=/opt/x\n"
        "[Install]\nWantedBy=multi-user.target\n",
    )
    _write(etc / "empty.service", "")
    return root


def test_services_read_a_mounted_image(query, image):
    rows = {r["unit"]: r for r in query("SELECT * FROM services(?)", (str(image),))}
    assert set(rows) == {
        "web.service",
        "www.service",
        "helper.service",
        "getty@.service",
        "old.service",
        "local.service",
        "empty.service",
    }
    web = rows["web.service"]
    assert web["enabled"] == "enabled"
    assert web["description"] == "Web server"
    assert web["path"] == "/usr/lib/systemd/system/web.service"
    assert web["exec_start"] == "/usr/bin/web -p 8080"  # the drop-in reset and replaced it
    assert web["user"] == "www"
    assert web["dropins"] == '["/usr/lib/systemd/system/web.service.d/10-port.conf"]'
    assert web["type"] == "service"
    assert (web["load"], web["active"], web["sub"], web["source"]) == (None, None, None, "files")
    assert rows["www.service"]["enabled"] == "alias"
    assert rows["www.service"]["link_target"] == "web.service"
    assert rows["www.service"]["description"] == "Web server"
    assert rows["helper.service"]["enabled"] == "static"
    assert rows["helper.service"]["exec_start"] == "/bin/sh -c  'echo hi'\n/bin/true"
    assert rows["getty@.service"]["enabled"] == "enabled"  # an instance of it is linked
    assert rows["old.service"]["enabled"] == "masked"
    assert rows["old.service"]["path"] == "/etc/systemd/system/old.service"
    assert rows["old.service"]["link_target"] == "/dev/null"
    assert rows["local.service"]["enabled"] == "disabled"
    assert rows["local.service"]["exec_start"] == "/opt/x"
    assert rows["empty.service"]["enabled"] == "masked"


def test_services_of_a_missing_root_are_none(query, tmp_path):
    assert query("SELECT * FROM services(?)", (str(tmp_path / "nope"),)) == []


def test_services_return_this_systems_units(query):
    if not any(Path(d).is_dir() for d in ("/etc/systemd/system", "/usr/lib/systemd/system")):
        pytest.skip("no systemd unit directories on this system")
    rows = query("SELECT unit, enabled, source FROM services()")
    assert rows
    if systemd_running(Path("/")):
        assert "systemd" in {r["source"] for r in rows}
    else:
        assert {r["source"] for r in rows} == {"files"}
        assert query("SELECT * FROM services() WHERE source = 'systemd'") == []


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="no systemctl")
def test_unit_file_states_agree_with_systemctl(query):
    """systemctl --root reads unit files offline: our reading must give the same states."""
    out = subprocess.run(
        ["systemctl", "list-unit-files", "--root=/", "--no-legend", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    ours = {
        r["unit"]: r["enabled"] for r in query("SELECT * FROM services() WHERE source = 'files'")
    }
    assert set(expected) <= set(ours)
    # Runtime states (generated, transient, enabled-runtime) depend on a running systemd.
    modelled = ("enabled", "disabled", "static", "masked", "alias", "indirect")
    comparable = {unit: state for unit, state in expected.items() if state in modelled}
    assert comparable
    assert {unit: ours[unit] for unit in comparable} == comparable


def test_plain_list_units_output_is_parsed():
    text = (
        "cron.service      loaded    active   running Regular background program processing\n"
        "● bad.service     not-found inactive dead    bad.service\n"
        "tmp.mount         loaded    active   mounted /tmp\n"
    )
    assert parse_list_units_plain(text) == [
        {
            "unit": "cron.service",
            "load": "loaded",
            "active": "active",
            "sub": "running",
            "description": "Regular background program processing",
        },
        {
            "unit": "bad.service",
            "load": "not-found",
            "active": "inactive",
            "sub": "dead",
            "description": "bad.service",
        },
        {
            "unit": "tmp.mount",
            "load": "loaded",
            "active": "active",
            "sub": "mounted",
            "description": "/tmp",
        },
    ]


# ----------------------------------------------------------------------------------- packages

STATUS = """\
Package: alpha
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 120
Maintainer: Jane Doe <jane@example.org>
Architecture: amd64
Source: alpha-src (1.0-1)
Version: 1.0-1+b1
Depends: libc6
Description: the alpha tool
 A longer description
 .
 over several lines.

Package: beta
Status: deinstall ok config-files
Architecture: all
Version: 2:3.4
Conffiles:
 /etc/beta.conf 0123456789abcdef
Description: beta, removed but configured
"""


def test_packages_parse_a_dpkg_status_file(query, tmp_path):
    status = tmp_path / "status"
    status.write_text(STATUS)
    (tmp_path / "info").mkdir()
    listfile = tmp_path / "info" / "alpha:amd64.list"
    listfile.write_text("/usr/bin/alpha\n")
    os.utime(listfile, (1_600_000_000, 1_600_000_000))
    rows = query("SELECT * FROM packages(?)", (str(status),))
    assert rows == [
        {
            "name": "alpha",
            "version": "1.0-1+b1",
            "architecture": "amd64",
            "status": "install ok installed",
            "size": 120 * 1024,
            "maintainer": "Jane Doe <jane@example.org>",
            "summary": "the alpha tool",
            "source_package": "alpha-src",
            "section": "utils",
            "install_time": 1_600_000_000.0,
            "source": "dpkg",
        },
        {
            "name": "beta",
            "version": "2:3.4",
            "architecture": "all",
            "status": "deinstall ok config-files",
            "size": None,
            "maintainer": None,
            "summary": "beta, removed but configured",
            "source_package": "beta",
            "section": None,
            "install_time": None,
            "source": "dpkg",
        },
    ]


def test_packages_of_a_missing_status_file_are_none(query, tmp_path):
    assert query("SELECT * FROM packages(?)", (str(tmp_path / "status"),)) == []


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_packages_include_dpkg_itself(query):
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "dpkg"], capture_output=True, text=True, check=True
    ).stdout
    rows = query("SELECT name, version, status, source FROM packages() WHERE name = 'dpkg'")
    assert rows == [
        {"name": "dpkg", "version": version, "status": "install ok installed", "source": "dpkg"}
    ]
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}:${Architecture}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    ours = query("SELECT name || ':' || architecture AS p FROM packages() WHERE source = 'dpkg'")
    assert sorted(r["p"] for r in ours) == sorted(listed)


def test_rpm_query_lines_are_parsed():
    line = (
        "bash\t5.1.8-9.el9\tx86_64\t7738634\tRed Hat, Inc.\tThe GNU Bourne Again shell\t"
        "bash-5.1.8-9.el9.src.rpm\t1700000000\n"
    )
    assert parse_rpm_line(line) == {
        "name": "bash",
        "version": "5.1.8-9.el9",
        "architecture": "x86_64",
        "status": "installed",
        "size": 7738634,
        "maintainer": "Red Hat, Inc.",
        "summary": "The GNU Bourne Again shell",
        "source_package": "bash-5.1.8-9.el9.src.rpm",
        "section": None,
        "install_time": 1700000000.0,
        "source": "rpm",
    }
    gpg = "gpg-pubkey\t1:abc-def\t(none)\t0\t(none)\tgpg(key)\t(none)\t1700000000"
    assert parse_rpm_line(gpg)["architecture"] is None
    assert parse_rpm_line("garbage") is None
