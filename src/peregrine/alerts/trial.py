"""A rule tried over stored events (``peregrine rules test``): what it would have raised over a
time range, without storing or forwarding anything.

Rows are read from the filestore's event files day by day and matched in chunks with the same
sandboxed matcher the engine uses; a windowed rule reports each window and group it would have
fired in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from peregrine.filestore.events import EventFiles

from .engine import group_key
from .matcher import Matcher
from .rules import Rule

#: Rows matched at a time.
CHUNK = 500


@dataclass
class TrialResult:
    scanned: int = 0
    #: The matching rows (with client_id, artifact, event_seq), the first ``limit``.
    matches: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0
    #: For a windowed rule: each (window start, group) and how many distinct members it had.
    windows: list[dict[str, Any]] = field(default_factory=list)
    #: Stopped at ``max_rows`` rows read: there may be more.
    truncated: bool = False


def stored_clients(files: EventFiles) -> list[str]:
    """Every client with event files."""
    if not files.root.is_dir():
        return []
    return sorted(path.name for path in files.root.iterdir() if path.name.startswith("C."))


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def try_rule(
    rule: Rule,
    files: EventFiles,
    since: float,
    until: float,
    clients: Iterable[str],
    *,
    known: Sequence[str] = (),
    limit: int = 100,
    max_rows: int = 1_000_000,
) -> TrialResult:
    """Match ``rule`` over the stored events of ``clients`` in ``[since, until)``."""
    result = TrialResult()
    members: dict[tuple[float, str], set[str]] = defaultdict(set)
    matcher = Matcher()
    try:
        for client_id in clients:
            for artifact in rule.artifacts:
                rows = files.iter_rows(client_id, artifact, since, until)
                for chunk in _chunks(rows):
                    if result.scanned >= max_rows:
                        result.truncated = True
                        break
                    result.scanned += len(chunk)
                    _match(rule, matcher, client_id, artifact, chunk, known, result, members, limit)
    finally:
        matcher.close()
    if rule.window is not None:
        for (start, group), seen in sorted(members.items()):
            result.windows.append(
                {
                    "start": start,
                    "group": group,
                    "count": len(seen),
                    "fires": len(seen) >= rule.window.threshold,
                }
            )
    return result


def _match(
    rule: Rule,
    matcher: Matcher,
    client_id: str,
    artifact: str,
    chunk: list[dict[str, Any]],
    known: Sequence[str],
    result: TrialResult,
    members: dict[tuple[float, str], set[str]],
    limit: int,
) -> None:
    own = [{k: v for k, v in row.items() if not k.startswith("_")} for row in chunk]
    meta = {
        "client_id": client_id,
        "hostname": "",
        "labels": "",
        "artifact": artifact,
        "source": chunk[0].get("_source", ""),
        "first_seq": 0,
        "received": chunk[0].get("_time", 0.0),
    }
    found, failed = matcher.match(meta, own, [rule], known)
    if rule.rule_id in failed:
        raise failed[rule.rule_id]
    for index in found.get(rule.rule_id, []):
        stored = chunk[index]
        row = {
            **own[index],
            "client_id": client_id,
            "artifact": artifact,
            "event_seq": stored.get("_seq"),
            "event_time": stored.get("_time"),
        }
        result.matched += 1
        if len(result.matches) < limit:
            result.matches.append(row)
        if rule.window is not None:
            start = rule.window.start(float(stored.get("_time") or 0.0))
            members[(start, group_key(rule.window, row))].add(str(row.get(rule.window.distinct)))
