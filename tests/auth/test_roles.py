"""Roles map to the permissions the issue names, and grants parse as people type them."""

from __future__ import annotations

import pytest

from peregrine.auth import roles
from peregrine.engine.context import KNOWN_PERMISSIONS


def test_permission_set_includes_the_named_ones_and_the_engines() -> None:
    named = {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "START_HUNT",
        "EXECVE",
        "FILESYSTEM_READ",
        "ARTIFACT_WRITER",
        "ANALYZE",
        "READ_METRICS",
        "ACKNOWLEDGE_ALERTS",
        "SERVER_ADMIN",
    }
    assert set(roles.PERMISSIONS) == named
    assert set(roles.PERMISSIONS) >= KNOWN_PERMISSIONS


def test_each_role_has_its_documented_permissions() -> None:
    assert roles.ROLES["administrator"] == set(roles.PERMISSIONS)
    assert roles.ROLES["investigator"] == {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "START_HUNT",
        "FILESYSTEM_READ",
        "ARTIFACT_WRITER",
        "ANALYZE",
        "ACKNOWLEDGE_ALERTS",
    }
    assert roles.ROLES["analyst"] == {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "FILESYSTEM_READ",
        "ANALYZE",
    }
    assert roles.ROLES["reader"] == {"READ_RESULTS"}
    assert roles.ROLES["api"] == {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "START_HUNT",
        "FILESYSTEM_READ",
        "ANALYZE",
    }
    assert roles.ROLES["monitoring"] == {"READ_METRICS"}
    only_admin = [name for name, perms in roles.ROLES.items() if "EXECVE" in perms]
    assert only_admin == ["administrator"]


def test_effective_permissions_are_the_union_and_ignore_unknown_names() -> None:
    assert roles.effective_permissions(["reader", "analyst"], ["EXECVE"]) == {
        "READ_RESULTS",
        "LABEL_CLIENT",
        "COLLECT_CLIENT",
        "FILESYSTEM_READ",
        "ANALYZE",
        "EXECVE",
    }
    assert roles.effective_permissions(["retired-role"], ["NOT_A_PERMISSION"]) == frozenset()
    assert roles.effective_permissions([]) == frozenset()


def test_query_permissions_keep_only_engine_permissions() -> None:
    assert roles.query_permissions(roles.ROLES["administrator"]) == {"EXECVE", "FILESYSTEM_READ"}
    assert roles.query_permissions(roles.ROLES["analyst"]) == {"FILESYSTEM_READ"}
    assert roles.query_permissions(roles.ROLES["reader"]) == frozenset()


def test_parse_grant_accepts_any_case() -> None:
    assert roles.parse_grant("Analyst") == ("role", "analyst")
    assert roles.parse_grant("execve") == ("permission", "EXECVE")
    assert roles.parse_grant(" START_HUNT ") == ("permission", "START_HUNT")
    with pytest.raises(ValueError, match="neither a role"):
        roles.parse_grant("root")


def test_roles_granting_names_the_roles_behind_a_permission() -> None:
    assert roles.roles_granting("START_HUNT", ["reader", "api", "investigator"]) == [
        "api",
        "investigator",
    ]
    assert roles.roles_granting("EXECVE", ["analyst"]) == []
