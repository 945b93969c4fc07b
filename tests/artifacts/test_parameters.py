"""Parameter types: values are validated, converted, and bound (never pasted into SQL)."""

from __future__ import annotations

import json

import pytest

from peregrine.artifacts.model import Parameter
from peregrine.artifacts.parameters import ParameterError, bind_values, convert
from peregrine.engine import Engine


def p(type_: str, **kw: object) -> Parameter:
    return Parameter(name="P", type=type_, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("string", 5, "5"),
        ("int", "0x10", 16),
        ("int", 7, 7),
        ("float", "2.5", 2.5),
        ("bool", "yes", 1),
        ("bool", False, 0),
        ("timestamp", "2024-05-01T00:00:00Z", 1714521600.0),
        ("timestamp", "2024-05-01T02:00:00+02:00", 1714521600.0),
        ("timestamp", 1714521600, 1714521600.0),
        ("regex", "^a.*b$", "^a.*b$"),
        ("list", "a, b,c", '["a", "b", "c"]'),
        ("csv", '"x,y",z', '["x,y", "z"]'),
        ("list", ["a", 1], '["a", "1"]'),
        ("json", '{"a": [1, 2]}', '{"a": [1, 2]}'),
        ("hidden", "secret", "secret"),
    ],
)
def test_values_convert(type_: str, value: object, expected: object) -> None:
    assert convert(p(type_), value) == expected


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (p("int"), "ten", "expects an integer"),
        (p("int"), True, "not true/false"),
        (p("float"), "x", "expects a number"),
        (p("bool"), "maybe", "expects true or false"),
        (p("timestamp"), "last tuesday", "ISO 8601"),
        (p("regex"), "(unclosed", "not a valid regular expression"),
        (p("choices", choices=["a", "b"]), "c", "must be one of a, b"),
        (p("multichoice", choices=["a", "b"]), "a,c", "'c' not among the choices"),
        (p("json"), "{bad", "is not valid JSON"),
        (p("yara"), "rule x { condition: nonsense }", "not a valid YARA rule"),
    ],
)
def test_bad_values_say_what_was_expected(param: Parameter, value: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as caught:
        convert(param, value)
    assert "parameter P" in str(caught.value)


def test_yara_rule_is_checked_and_kept() -> None:
    rule = 'rule r { strings: $a = "x" condition: $a }'
    assert convert(p("yara"), rule) == rule


def test_bind_values_uses_defaults_and_refuses_unknown_and_missing() -> None:
    params = [
        Parameter("A", "int", default=3),
        Parameter("B", "string", required=True),
        Parameter("C", "multichoice", default=["x"], choices=["x", "y"]),
    ]
    assert bind_values(params, {"B": "b"}) == {"A": 3, "B": "b", "C": '["x"]'}
    with pytest.raises(ParameterError, match="unknown parameter Z"):
        bind_values(params, {"B": "b", "Z": 1})
    with pytest.raises(ParameterError, match="B is required"):
        bind_values(params, {})


def test_a_hostile_value_cannot_change_the_query() -> None:
    engine = Engine()
    hostile = "x' OR '1'='1"
    values = bind_values([Parameter("Name", "string")], {"Name": hostile})
    sql = "SELECT count(*) FROM (SELECT 'root' AS n UNION ALL SELECT 'x') WHERE n = :Name"
    assert list(engine.execute(sql, values)) == [(0,)]
    listed = bind_values([Parameter("L", "list")], {"L": "a'); DROP TABLE x; --,b"})
    rows = list(engine.execute("SELECT value FROM json_each(:L)", listed))
    assert rows == [("a'); DROP TABLE x; --",), ("b",)]
    assert json.loads(listed["L"])[0] == "a'); DROP TABLE x; --"
