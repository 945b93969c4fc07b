"""A timeline's sources: what to read (a collection's or a hunt's result set, or an event
log), which column(s) hold the time, what each time means and how to word each row.

A bodyfile-style source names several time columns (``mtime``, ``atime``, ``ctime``,
``btime``): each becomes a row of its own, its ``timestamp_desc`` saying which. Checked when a
timeline is saved, so a stored timeline always builds valid SQL.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any

from peregrine.analysis.statement import HUNT_ID_RE
from peregrine.artifacts.model import NAME_RE
from peregrine.auth.sharing import NotAllowed, NotVisible, SharingError
from peregrine.filestore import FLOW_ID_RE
from peregrine.filestore.names import CLIENT_ID_RE

KINDS = ("flow", "hunt", "events")
UNITS = ("s", "ms", "us")
MAX_SOURCES = 20
MAX_TIMES = 8
#: What a bodyfile's (and stat's) time columns mean, in Timesketch's words.
MAC_TIMES = {
    "mtime": "Content Modification Time",
    "atime": "Last Access Time",
    "ctime": "Metadata Modification Time",
    "btime": "Creation Time",
    "crtime": "Creation Time",
}
_LABEL = re.compile(r"^[\w .:/-]{1,60}$")


class TimelineError(SharingError):
    """A timeline request that cannot be taken; the message says what to change."""


class TimelineNotFound(TimelineError, NotVisible):
    pass


class TimelineForbidden(TimelineError, NotAllowed):
    pass


@dataclass(frozen=True, slots=True)
class Source:
    kind: str
    artifact: str
    #: The time column(s); several (a bodyfile's MAC times) give a row each.
    time: list[str]
    #: flow: F.…, hunt: H.…; events: the client (optional, all clients if empty).
    id: str = ""
    #: The artifact's source name (flow, hunt).
    source: str = ""
    #: Events: the range read (epoch seconds), so only those days are opened.
    since: float | None = None
    until: float | None = None
    #: What each time means (``timestamp_desc``), per time column; MAC names have defaults.
    desc: dict[str, str] = field(default_factory=dict)
    #: The message, from the row's columns: "{name} started by {user}".
    message: str = ""
    #: Numbers in the time columns count these (seconds by default).
    unit: str = "s"
    #: The name the rows carry as their source (default: the artifact).
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.artifact

    def describe(self, column: str) -> str:
        return self.desc.get(column) or MAC_TIMES.get(column.lower()) or column

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_sources(raw: Any) -> list[Source]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_SOURCES:
        raise TimelineError(f"a timeline has 1 to {MAX_SOURCES} sources")
    sources = []
    for number, item in enumerate(raw, 1):
        try:
            sources.append(parse_source(item))
        except TimelineError as exc:
            raise TimelineError(f"source {number}: {exc}") from None
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise TimelineError("two sources have the same label: give each a label of its own")
    return sources


def parse_source(item: Any) -> Source:
    if not isinstance(item, dict):
        raise TimelineError("a source is an object with kind, artifact and time")
    known = set(Source.__dataclass_fields__)
    unknown = set(item) - known
    if unknown:
        raise TimelineError(f"unknown field(s) {', '.join(sorted(unknown))}")
    kind = item.get("kind")
    if kind not in KINDS:
        raise TimelineError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    artifact = item.get("artifact")
    if not isinstance(artifact, str) or NAME_RE.match(artifact) is None:
        raise TimelineError("artifact: an artifact name (Artifact.Name)")
    ident = _text(item.get("id", ""), "id", 64)
    pattern = {"flow": FLOW_ID_RE, "hunt": HUNT_ID_RE, "events": CLIENT_ID_RE}[kind]
    if (ident or kind != "events") and pattern.fullmatch(ident) is None:
        what = {"flow": "a collection id (F.…)", "hunt": "a hunt id (H.…)",
                "events": "a client id (C.…) or empty for every client"}[kind]  # fmt: skip
        raise TimelineError(f"id: {what}")
    times = item.get("time")
    if isinstance(times, str):
        times = [times]
    if (
        not isinstance(times, list)
        or not 0 < len(times) <= MAX_TIMES
        or not all(isinstance(t, str) and 0 < len(t) <= 200 for t in times)
        or len(set(times)) != len(times)
    ):
        raise TimelineError(f"time: a column name, or a list of 1 to {MAX_TIMES} of them")
    desc = item.get("desc") or {}
    if isinstance(desc, str):
        desc = dict.fromkeys(times, desc)
    if not isinstance(desc, dict) or not all(
        k in times and isinstance(v, str) and len(v) <= 200 for k, v in desc.items()
    ):
        raise TimelineError("desc: text, or an object of time column -> what that time means")
    unit = item.get("unit", "s")
    if unit not in UNITS:
        raise TimelineError(f"unit: one of {', '.join(UNITS)}")
    label = _text(item.get("label", ""), "label", 60)
    if label and _LABEL.match(label) is None:
        raise TimelineError("label: letters, digits, spaces and . : / - only")
    return Source(
        kind=kind,
        artifact=artifact,
        time=list(times),
        id=ident,
        source=_text(item.get("source", ""), "source", 200),
        since=_seconds(item.get("since"), "since"),
        until=_seconds(item.get("until"), "until"),
        desc=desc,
        message=check_template(_text(item.get("message", ""), "message", 1000)),
        unit=unit,
        label=label,
    )


def check_template(template: str) -> str:
    """``{column}`` fields only: no attribute, index, conversion or format (a template is
    data, never code)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TimelineError(f"message: {exc} (write {{{{ for a brace)") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if not name or any(ch in name for ch in ".[]") or spec or conversion:
            raise TimelineError(
                f"message: {{{name}}} is not a column; write {{column}} and nothing else"
            )
    return template


def render(template: str, row: dict[str, Any]) -> str:
    """The message of one row: its template filled in, or its columns as ``name=value``."""
    if not template:
        shown = ", ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("_"))
        return shown[:500]
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            value = row.get(name)
            out.append("" if value is None else str(value))
    return "".join(out)


def _text(value: Any, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise TimelineError(f"{name}: text of at most {limit} characters")
    return value


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TimelineError(f"{name}: epoch seconds")
    return float(value)
