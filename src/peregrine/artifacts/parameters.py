"""Parameter types: validate and convert a value, then it is *bound* into SQL as ``:name``.

Values are never pasted into query text, so a hostile value can only ever be a value. Each
converter returns something SQLite stores (text, number, NULL); lists become JSON arrays, which
queries read with ``json_each(:Param)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peregrine.artifacts.model import Parameter


class ParameterError(ValueError):
    """A value that does not fit its parameter; the message says what was expected."""


_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f", ""}


def _string(value: Any, param: Parameter) -> str:
    if isinstance(value, (dict, list)):
        raise ParameterError("expects text, not a list or mapping")
    return str(value)


def _int(value: Any, param: Parameter) -> int:
    if isinstance(value, bool):
        raise ParameterError("expects an integer, not true/false")
    try:
        return int(str(value).strip(), 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ParameterError(f"expects an integer, got {value!r}") from None


def _float(value: Any, param: Parameter) -> float:
    if isinstance(value, bool):
        raise ParameterError("expects a number, not true/false")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"expects a number, got {value!r}") from None


def _bool(value: Any, param: Parameter) -> int:
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ParameterError(f"expects true or false, got {value!r}")


def _timestamp(value: Any, param: Parameter) -> float:
    """Seconds since the epoch from a number or an ISO 8601 time (UTC when no zone is given)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ParameterError(
                f"expects a time as seconds since 1970 or ISO 8601 (2024-05-01T12:00:00Z), "
                f"got {value!r}"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _regex(value: Any, param: Parameter) -> str:
    text = _string(value, param)
    try:
        re.compile(text)
    except re.error as exc:
        raise ParameterError(f"is not a valid regular expression: {exc}") from None
    return text


def _choice(value: Any, param: Parameter) -> str:
    text = _string(value, param)
    if text not in (param.choices or []):
        raise ParameterError(f"must be one of {', '.join(param.choices or [])}; got {text!r}")
    return text


def _items(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ParameterError(f"looks like JSON but is not valid: {exc}") from None
        if not isinstance(parsed, list):
            raise ParameterError("expects a list")
        return parsed
    if not text:
        return []
    return [item.strip() for item in next(csv.reader(io.StringIO(text)))]


def _list(value: Any, param: Parameter) -> str:
    return json.dumps([str(v) for v in _items(value)])


def _multichoice(value: Any, param: Parameter) -> str:
    items = [str(v) for v in _items(value)]
    bad = [v for v in items if v not in (param.choices or [])]
    if bad:
        raise ParameterError(
            f"{', '.join(map(repr, bad))} not among the choices {', '.join(param.choices or [])}"
        )
    return json.dumps(items)


def _json(value: Any, param: Parameter) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ParameterError(f"is not valid JSON: {exc}") from None
    return json.dumps(value)


def _yara(value: Any, param: Parameter) -> str:
    import yara

    text = _string(value, param)
    try:
        yara.compile(source=text)
    except yara.Error as exc:
        raise ParameterError(f"is not a valid YARA rule: {exc}") from None
    return text


Converter = Callable[[Any, "Parameter"], Any]

PARAMETER_TYPES: dict[str, Converter] = {
    "string": _string,
    "hidden": _string,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "timestamp": _timestamp,
    "regex": _regex,
    "choices": _choice,
    "multichoice": _multichoice,
    "list": _list,
    "csv": _list,
    "json": _json,
    "yara": _yara,
}


def convert(param: Parameter, value: Any) -> Any:
    """The value to bind for ``param``; ``None`` (NULL) stays NULL."""
    if value is None:
        return None
    try:
        return PARAMETER_TYPES[param.type](value, param)
    except ParameterError as exc:
        raise ParameterError(f"parameter {param.name} ({param.type}) {exc}") from None


def bind_values(parameters: list[Parameter], given: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's bound value: given, else its default. Unknown names are errors."""
    known = {p.name for p in parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ParameterError(
            f"unknown parameter {', '.join(unknown)} (this artifact has: {listed})"
        )
    values: dict[str, Any] = {}
    for param in parameters:
        value = given.get(param.name, param.default)
        if value is None and param.required:
            raise ParameterError(f"parameter {param.name} is required")
        values[param.name] = convert(param, value)
    return values
