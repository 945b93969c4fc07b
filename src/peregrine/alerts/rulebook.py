"""The rules as people manage them: checked before they are saved, versioned, enabled and
disabled, and the built-in set installed once (an edited built-in rule is never overwritten).

A rule is checked against the columns of the event artifacts it reads (``columns``), by
compiling its condition in the matcher's sandbox, so a typo is refused with its position
instead of silently matching nothing.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import yaml

from peregrine.datastore import Conflict, Datastore, NotFound

from .engine import ColumnsOf
from .matcher import Matcher
from .rules import Rule, RuleError, rule_from_dict, rule_from_record


def builtin_rules() -> list[Rule]:
    """The rules Peregrine ships (``builtin_rules.yaml``)."""
    text = (resources.files("peregrine.alerts") / "builtin_rules.yaml").read_text()
    return [rule_from_dict(item, builtin=True) for item in yaml.safe_load(text)]


def check_rule(rule: Rule, columns: ColumnsOf, matcher: Matcher) -> None:
    """RuleError unless every artifact is an event artifact and the condition compiles
    against each one's columns."""
    for artifact in rule.artifacts:
        known = columns(artifact)
        if known is None:
            raise RuleError(
                "artifacts",
                f"{artifact} is not an event artifact (CLIENT_EVENT): "
                "`peregrine artifacts list` names them",
            )
        matcher.check(rule, known)


class RuleBook:
    """Check, save, list and switch rules in the datastore."""

    def __init__(self, datastore: Datastore, columns: ColumnsOf) -> None:
        self._datastore = datastore
        self._columns = columns
        self._matcher = Matcher()

    def check(self, rule: Rule) -> None:
        check_rule(rule, self._columns, self._matcher)

    def list(self) -> list[Rule]:
        return [rule_from_record(record) for record in self._datastore.rules.all()]

    def get(self, rule_id: str) -> Rule:
        record = self._datastore.rules.get(rule_id)
        if record is None:
            raise NotFound(f"no rule {rule_id}: `peregrine rules list` names them")
        return rule_from_record(record)

    def save(
        self, data: dict[str, Any], actor: str, *, expected_version: int | None = None
    ) -> Rule:
        """Check and store a rule (a new version when it exists)."""
        rule = rule_from_dict(data)
        self.check(rule)
        return self._store(rule, actor, expected_version=expected_version)

    def set_enabled(self, rule_id: str, enabled: bool, actor: str) -> Rule:
        rule = self.get(rule_id)
        record = self._datastore.rules.save(
            rule.rule_id,
            severity=rule.severity,
            enabled=enabled,
            definition=rule.definition(),
            modified=time.time(),
            modified_by=actor,
            expected_version=rule.version,
        )
        return rule_from_record(record)

    def install_builtin(self, actor: str = "peregrine") -> int:
        """Store each built-in rule not stored yet (enabled); how many were added."""
        added = 0
        for rule in builtin_rules():
            try:
                self._store(rule, actor, create_only=True)
                added += 1
            except Conflict:
                continue
        return added

    def _store(
        self,
        rule: Rule,
        actor: str,
        *,
        expected_version: int | None = None,
        create_only: bool = False,
    ) -> Rule:
        record = self._datastore.rules.save(
            rule.rule_id,
            severity=rule.severity,
            enabled=rule.enabled,
            definition=rule.definition(),
            modified=time.time(),
            modified_by=actor,
            builtin=rule.builtin,
            expected_version=expected_version,
            create_only=create_only,
        )
        return rule_from_record(record)

    def close(self) -> None:
        self._matcher.close()
