"""Which client, flow and hunt a log line concerns, carried by context variables so every
line logged while working on one says so, without each call site passing the ids.

Set with ``log_context(client_id=..., flow_id=..., hunt_id=...)`` (a ``with`` block) or
``set_log_context`` (for the rest of a task or thread: an agent connection's session task);
``ContextFilter`` copies them onto each record, where the JSON formatter (``logformat.py``)
and any ``%(client_id)s`` in a text format find them. Standard library only: the agent uses
it too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

#: The ids a log line may carry, in the order they are written.
FIELDS = ("client_id", "flow_id", "hunt_id")

_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"peregrine_{name}", default=None) for name in FIELDS
}
#: Ids true for every line of this process (an agent's own client id).
_PROCESS: dict[str, str] = {}


def set_log_context(**ids: str | None) -> None:
    """Set ids for the rest of the current task or thread."""
    for name, value in ids.items():
        _VARS[name].set(value)


@contextlib.contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Set ids for the lines logged inside the block, then put back what was there."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_process_context(**ids: str) -> None:
    """Ids every line of this process concerns (the agent's client id), in every thread."""
    _PROCESS.update(ids)


def current() -> dict[str, str]:
    """The ids in force here, those of the task or thread over the process's."""
    found = dict(_PROCESS)
    for name, var in _VARS.items():
        value = var.get()
        if value:
            found[name] = value
    return found


class ContextFilter(logging.Filter):
    """Puts the ids in force on each record (``record.client_id``...), None where unset."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ids.get(name))
        return True
