"""What an alert rule is: the event artifacts it reads, a SQL condition over their rows, and an
optional window that counts distinct members (hosts, by default) across the fleet.

A rule without a window raises one alert per matching event; with a window it raises one alert
per window and group once ``threshold`` distinct members matched in it. Windows are aligned to
the epoch (``floor(received / seconds)``), so every frontend names the same window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from peregrine.datastore.alerts import RuleRecord

SEVERITIES = ("info", "low", "medium", "high", "critical")
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The longest condition a rule may hold (it is compiled for every batch's columns).
MAX_CONDITION = 4000


class RuleError(ValueError):
    """A rule that cannot be saved; ``field`` names what to fix, ``position`` (0-based, in the
    condition) where, when known."""

    def __init__(self, field: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.position = position


@dataclass(frozen=True, slots=True)
class Window:
    """Raise once ``threshold`` distinct values of ``distinct`` matched within ``seconds``
    (per value of ``group_by``)."""

    seconds: float
    threshold: int
    distinct: str = "client_id"
    group_by: tuple[str, ...] = ()

    def start(self, received: float) -> float:
        """The start of the window an event received at ``received`` falls in."""
        return float(int(received // self.seconds) * self.seconds)


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    artifacts: tuple[str, ...]
    condition: str
    severity: str = "medium"
    description: str = ""
    window: Window | None = None
    enabled: bool = True
    builtin: bool = False
    version: int = 0
    modified: float = 0.0
    modified_by: str = ""
    #: Columns named in the alert's summary (their values from the matching row).
    summary_columns: tuple[str, ...] = field(default=())

    def definition(self) -> dict[str, Any]:
        """What the datastore keeps of the rule beside its id, severity and enabled flag."""
        value: dict[str, Any] = {
            "artifacts": list(self.artifacts),
            "condition": self.condition,
            "description": self.description,
            "summary_columns": list(self.summary_columns),
        }
        if self.window is not None:
            value["window"] = {
                "seconds": self.window.seconds,
                "threshold": self.window.threshold,
                "distinct": self.window.distinct,
                "group_by": list(self.window.group_by),
            }
        return value


def rule_from_record(record: RuleRecord) -> Rule:
    return rule_from_dict(
        {
            "rule_id": record.rule_id,
            "severity": record.severity,
            "enabled": record.enabled,
            **record.definition,
        },
        builtin=record.builtin,
        version=record.version,
        modified=record.modified,
        modified_by=record.modified_by,
    )


def rule_from_dict(data: dict[str, Any], **stored: Any) -> Rule:
    """A rule from its JSON/YAML form; RuleError says which field is wrong and how."""
    rule_id = data.get("rule_id") or data.get("name") or ""
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise RuleError(
            "rule_id", "a rule's id is 1-128 letters, digits, '.', '_' or '-' (Team.Rule_name)"
        )
    artifacts = data.get("artifacts") or []
    if isinstance(artifacts, str):
        artifacts = [artifacts]
    if not artifacts or not all(isinstance(a, str) and a for a in artifacts):
        raise RuleError("artifacts", "name the event artifact(s) the rule reads")
    condition = data.get("condition")
    if not isinstance(condition, str) or not condition.strip():
        raise RuleError("condition", "a rule needs a condition: a SQL expression over a row")
    if len(condition) > MAX_CONDITION:
        raise RuleError("condition", f"a condition is at most {MAX_CONDITION} characters")
    severity = data.get("severity", "medium")
    if severity not in SEVERITIES:
        raise RuleError("severity", f"severity must be one of {', '.join(SEVERITIES)}")
    summary_columns = tuple(data.get("summary_columns") or ())
    for column in summary_columns:
        _check_column("summary_columns", column)
    return Rule(
        rule_id=rule_id,
        artifacts=tuple(artifacts),
        condition=condition.strip(),
        severity=severity,
        description=str(data.get("description") or ""),
        window=_window(data.get("window")),
        enabled=bool(data.get("enabled", True)),
        summary_columns=summary_columns,
        **stored,
    )


def _window(data: Any) -> Window | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise RuleError("window", "window is {seconds, threshold, distinct, group_by}")
    seconds, threshold = data.get("seconds"), data.get("threshold")
    if not isinstance(seconds, int | float) or not 1 <= seconds <= 86400:
        raise RuleError("window.seconds", "window.seconds is between 1 and 86400")
    if not isinstance(threshold, int) or not 1 <= threshold <= 1_000_000:
        raise RuleError("window.threshold", "window.threshold is a whole number from 1")
    distinct = data.get("distinct", "client_id")
    _check_column("window.distinct", distinct)
    group_by = tuple(data.get("group_by") or ())
    for column in group_by:
        _check_column("window.group_by", column)
    return Window(float(seconds), threshold, distinct, group_by)


def _check_column(where: str, name: Any) -> None:
    if not isinstance(name, str) or not _COLUMN.match(name):
        raise RuleError(where, f"{name!r} is not a column name (letters, digits, '_')")
