"""Read an analysis query before it runs: one SELECT, and which of Peregrine's table functions
it names, with what arguments.

DuckDB parses the text (``json_serialize_sql``, which serialises SELECT statements only, so
anything else is refused here); this module walks the syntax tree. Nothing of the user's text is
ever pasted into other SQL: the arguments found become view names and file lists bound through
DuckDB's API (``engine.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from peregrine.artifacts.model import NAME_RE
from peregrine.filestore import FLOW_ID_RE
from peregrine.filestore.names import CLIENT_ID_RE

from .errors import QueryRefused

HUNT_ID_RE = re.compile(r"H\.[0-9a-f]{16}")
#: Peregrine's table functions and the arguments each takes.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "flow": ("flow_id", "artifact/source"),
    "hunt": ("hunt_id", "artifact/source"),
    "clients": (),
    "collections": (),
    "hunts": (),
    # the artifact, then by name (all optional): client => 'C.…', since => …, until => …
    "events": ("artifact", "client", "since", "until"),
}
#: ``events()``'s arguments given by name.
EVENT_OPTIONS = ("client", "since", "until")
#: DuckDB's ways to run SQL held in a string: the query would escape the names read here.
_SQL_IN_STRINGS = frozenset({"query", "query_table"})
_SOURCE_MAX = 200


@dataclass(frozen=True, slots=True)
class TableCall:
    """One use of a Peregrine table function, arguments validated."""

    function: str
    args: tuple[str, ...] = ()

    @property
    def artifact(self) -> str:
        return self.args[1].partition("/")[0]

    @property
    def source(self) -> str:
        return self.args[1].partition("/")[2]


def parse(connection: Any, sql: str) -> list[TableCall]:
    """The Peregrine table functions ``sql`` uses (each once), after checking it is exactly
    one SELECT. ``connection`` is any DuckDB connection (only its parser is used)."""
    raw = connection.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0]
    tree = json.loads(raw)
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse the query"))
        if "Only SELECT" in message:
            raise QueryRefused(
                "only a SELECT query can be run (analysis is read-only); "
                "WITH ... SELECT, joins and subqueries are fine"
            )
        raise QueryRefused(f"cannot parse the query: {message}")
    if len(tree.get("statements", [])) != 1:
        raise QueryRefused("send one SELECT statement at a time (no ';'-separated statements)")
    calls: dict[TableCall, None] = {}
    for function in _table_functions(tree):
        name = str(function.get("function_name", "")).lower()
        if name in _SQL_IN_STRINGS:
            raise QueryRefused(f"{name}() is not available: write the query itself instead")
        if name in SIGNATURES and not function.get("schema"):
            calls[_call(name, function.get("arguments", []))] = None
    return list(calls)


def _table_functions(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "TABLE_FUNCTION" and isinstance(item.get("function"), dict):
                found.append(item["function"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _call(name: str, arguments: list[dict[str, Any]]) -> TableCall:
    if name == "events":
        return _events_call(arguments)
    wanted = SIGNATURES[name]
    usage = f"{name}({', '.join(repr(a) for a in wanted)})"
    if len(arguments) != len(wanted):
        raise QueryRefused(f"{name}() takes {len(wanted)} argument(s): {usage}")
    values: list[str] = []
    for argument in arguments:
        expression = argument.get("expression", {})
        literal = expression.get("literal", {}) if expression.get("class") == "CONSTANT" else {}
        if argument.get("name") or literal.get("kind") != "STRING":
            raise QueryRefused(f"{name}() takes string literals in order: {usage}")
        values.append(str(literal.get("text", "")))
    call = TableCall(name, tuple(values))
    if name == "flow" and FLOW_ID_RE.fullmatch(values[0]) is None:
        raise QueryRefused(f"{values[0]!r} is not a collection id (F. and 16 letters or digits)")
    if name == "hunt" and HUNT_ID_RE.fullmatch(values[0]) is None:
        raise QueryRefused(f"{values[0]!r} is not a hunt id (H. and 16 hex digits)")
    if name in ("flow", "hunt"):
        _check_artifact_source(name, call)
    return call


def _check_artifact_source(name: str, call: TableCall) -> None:
    if NAME_RE.match(call.artifact) is None:
        raise QueryRefused(
            f"{name}(): {call.artifact!r} is not an artifact name; write 'Artifact.Name' or "
            "'Artifact.Name/Source'"
        )
    source = call.source
    if len(source) > _SOURCE_MAX or any(ord(ch) < 32 for ch in source):
        raise QueryRefused(f"{name}(): the source name must be printable, at most 200 characters")


_EVENTS_USAGE = (
    "events('Artifact.Name', client => 'C.…', since => '2026-01-01T00:00:00Z', "
    "until => 1767225600): the artifact, then any of client, since, until by name"
)


def _events_call(arguments: list[dict[str, Any]]) -> TableCall:
    """``events('Artifact', client => …, since => …, until => …)``: args are the artifact, the
    client id, since and until as written (the view's name hashes them as DuckDB prints
    them), '' for those not given."""
    values = {"artifact": "", "client": "", "since": "", "until": ""}
    for number, argument in enumerate(arguments):
        expression = argument.get("expression", {})
        literal = expression.get("literal", {}) if expression.get("class") == "CONSTANT" else {}
        name = str(argument.get("name") or "")
        if number == 0 and not name and literal.get("kind") == "STRING":
            values["artifact"] = str(literal.get("text", ""))
            continue
        if name not in EVENT_OPTIONS or values[name]:
            raise QueryRefused(f"events() takes {_EVENTS_USAGE}")
        kind = literal.get("kind")
        if name == "client" and kind != "STRING":
            raise QueryRefused("events(): client is a client id in quotes ('C.…')")
        if name != "client" and kind not in ("STRING", "INTEGER", "BIGINT", "DECIMAL"):
            raise QueryRefused(f"events(): {name} is an ISO 8601 time in quotes or epoch seconds")
        values[name] = str(literal.get("text", ""))
    call = TableCall("events", tuple(values.values()))
    if not values["artifact"] or NAME_RE.match(values["artifact"]) is None:
        raise QueryRefused(f"events() takes {_EVENTS_USAGE}")
    if values["client"] and CLIENT_ID_RE.fullmatch(values["client"]) is None:
        raise QueryRefused(f"{values['client']!r} is not a client id (C. and 16 hex digits)")
    for name in ("since", "until"):
        if values[name]:
            event_time(values[name], name)
    return call


def event_time(text: str, name: str = "time") -> float:
    """Epoch seconds of an ``events()`` bound: a number of seconds or an ISO 8601 time (UTC
    unless it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryRefused(
            f"events(): {name} {text!r} is neither epoch seconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
