"""Which sources never end. A CLIENT_EVENT source must read an event plugin (it is meant to run
for good, and one that ends is only restarted again and again); a CLIENT or SERVER source must
not (a collection of it would run until its time-out and look like a hang)."""

from __future__ import annotations

import re

from peregrine.artifacts.model import Artifact
from peregrine.engine.registry import Registry


def event_plugins_in(sql: str, registry: Registry) -> set[str]:
    """The event plugins (tables that never end) that ``sql`` calls."""
    names = [t.name for t in registry.tables if t.events]
    if not names:
        return set()
    calls = re.compile(r'(?<![\w."])(' + "|".join(map(re.escape, names)) + r")\s*\(", re.I)
    return {match.group(1).lower() for match in calls.finditer(sql)}


def event_problem(artifact: Artifact, sql: str, registry: Registry) -> str | None:
    """What is wrong with one source of ``artifact`` as to ending, or None."""
    used = event_plugins_in(sql, registry)
    if artifact.type == "CLIENT_EVENT" and not used:
        return (
            "a CLIENT_EVENT source must read an event plugin (clock, diff, process_events, "
            "file_changes, log_lines ...): this query ends, so it would be restarted for ever"
        )
    if artifact.type in ("CLIENT", "SERVER") and used:
        return (
            f"{', '.join(sorted(used))}() never ends: make this a CLIENT_EVENT artifact (a "
            f"{artifact.type} collection of it would run until its time-out)"
        )
    return None
