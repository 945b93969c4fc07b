"""The built-in rules fit the built-in event artifacts: each reads a CLIENT_EVENT artifact of
the library and its condition, window and summary name columns that artifact's rows have; and
each fires on the row it is about (and not on an ordinary one)."""

from __future__ import annotations

from typing import Any

import pytest

from peregrine.alerts.columns import event_columns
from peregrine.alerts.matcher import Matcher
from peregrine.alerts.rulebook import builtin_rules, check_rule
from peregrine.artifacts.repository import ArtifactRepository

#: For each built-in rule: a row it must match and one it must not.
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "Linux.ProcessFromTmp": (
        {"action": "start", "exe": "/dev/shm/.x", "cmdline": "/dev/shm/.x", "username": "www"},
        {"action": "start", "exe": "/usr/bin/ls", "cmdline": "ls", "username": "alice"},
    ),
    "Linux.RootAuthorizedKey": (
        {"action": "written", "path": "/root/.ssh/authorized_keys", "sha256": "ab"},
        {"action": "written", "path": "/home/alice/.ssh/authorized_keys", "sha256": "ab"},
    ),
    "Linux.LdSoPreload": (
        {"action": "created", "path": "/etc/ld.so.preload"},
        {"action": "created", "path": "/etc/ld.so.conf"},
    ),
    "Linux.PrivilegedListener": (
        {"lport": 23, "proto": "tcp", "process_name": "nc", "exe": "/usr/bin/nc"},
        {"lport": 8080, "proto": "tcp", "process_name": "java", "exe": "/usr/bin/java"},
    ),
    "Linux.SSHLoginFailureSpray": (
        {"accepted": 0, "user": "root", "remote_ip": "203.0.113.7"},
        {"accepted": 1, "user": "root", "remote_ip": "203.0.113.7"},
    ),
    "Linux.KernelModuleLoad": (
        {"action": "loaded", "name": "rootkit", "filename": "/tmp/r.ko", "taint": "OE"},
        {"action": "unloaded", "name": "snd", "filename": "", "taint": ""},
    ),
}


@pytest.fixture(scope="module")
def repository() -> ArtifactRepository:
    return ArtifactRepository.default(forensic=False)


def test_every_built_in_rule_compiles_against_its_artifacts_columns(
    repository: ArtifactRepository,
) -> None:
    columns = event_columns(repository)
    rules = builtin_rules()
    assert {rule.rule_id for rule in rules} == set(EXAMPLES)
    for rule in rules:
        check_rule(rule, columns, Matcher())


@pytest.mark.parametrize("rule_id", sorted(EXAMPLES))
def test_a_built_in_rule_matches_what_it_is_about(rule_id: str) -> None:
    [rule] = [r for r in builtin_rules() if r.rule_id == rule_id]
    hit, miss = EXAMPLES[rule_id]
    meta = {"client_id": "C.1", "artifact": rule.artifacts[0], "source": "", "first_seq": 1,
            "received": 0.0}  # fmt: skip
    found, failed = Matcher().match(meta, [miss, hit], [rule])
    assert not failed
    assert found == {rule_id: [1]}
