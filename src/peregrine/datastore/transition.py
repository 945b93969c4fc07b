"""A collection's state change, defined once: as SQL (``CollectionStore.transition``) and on a
row in memory (``apply_runs``, the group commit's batches), both from ``CHANGES``.

A flow in a final state stays as it is. Otherwise it takes the new state; an error given is
kept; entering "In progress" stamps ``started`` (once) and ``last_activity``; entering a final
state stamps ``finished``. Unresponsive is not final: a client that comes back can still finish.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from sqlalchemy import bindparam, func, update

from .records import FINAL_STATES, FLOW_STATES, IN_PROGRESS
from .schema import flows

#: What a change sets a column to: the error given, the time, or the time unless already set.
Value = Literal["error", "now", "first_now"]


@functools.cache
def changes(to_state: str, with_error: bool) -> tuple[tuple[str, Value], ...]:
    """The columns a move to ``to_state`` sets besides ``state``, with what each gets."""
    if to_state not in FLOW_STATES:
        raise ValueError(f"unknown collection state {to_state!r}; one of {FLOW_STATES}")
    sets: list[tuple[str, Value]] = [("error", "error")] if with_error else []
    if to_state == IN_PROGRESS:
        sets += [("started", "first_now"), ("last_activity", "now")]
    if to_state in FINAL_STATES:
        sets.append(("finished", "now"))
    return tuple(sets)


def move(values: dict[str, Any], to_state: str, error: str | None, now: float) -> bool:
    """The change on a flow's row read into ``values``; False if it is final."""
    if values["state"] in FINAL_STATES:
        return False
    values["state"] = to_state
    for column, value in changes(to_state, error is not None):
        if value == "error":
            values[column] = error
        elif value == "now" or values[column] is None:
            values[column] = now
    return True


def statement(flow_id: str, to_state: str, now: float, error: str | None) -> tuple[Any, Any]:
    """The UPDATE making the change unless the flow is final (one row changed if made), with
    its parameters."""
    sets = changes(to_state, error is not None)
    parameters: dict[str, Any] = {"b_flow": flow_id}
    if error is not None:
        parameters["b_error"] = error
    if any(value != "error" for _, value in sets):
        parameters["b_now"] = now
    return _update(to_state, error is not None), parameters


def _sql(column: str, value: Value) -> Any:
    if value == "error":
        return bindparam("b_error")
    if value == "now":
        return bindparam("b_now")
    return func.coalesce(flows.c[column], bindparam("b_now"))


@functools.cache
def _update(to_state: str, with_error: bool) -> Any:
    values = {column: _sql(column, value) for column, value in changes(to_state, with_error)}
    return (
        update(flows)
        .where(flows.c.flow_id == bindparam("b_flow"), flows.c.state.not_in(FINAL_STATES))
        .values(state=to_state, **values)
    )
