"""Charts drawn on the server for the HTML report: a line over time, bars, and what cannot be
drawn (the table is shown instead)."""

from __future__ import annotations

from peregrine.notebooks.charts import svg


def test_a_line_over_time_spans_its_first_and_last_time() -> None:
    rows = [["2026-11-30T12:00:00+00:00", 3], ["2026-11-30T10:00:00+00:00", 1],
            ["2026-11-30T11:00:00+00:00", 7]]  # fmt: skip
    drawn = svg({"type": "line", "x": "hour", "y": "n", "title": "<logins>"}, ["hour", "n"], rows)
    assert drawn is not None and "<polyline" in drawn
    assert "2026-11-30 10:00:00" in drawn and "2026-11-30 12:00:00" in drawn
    assert "&lt;logins&gt;" in drawn and "<logins>" not in drawn
    # Ordered by time: the first point is the 10:00 one (the lowest value, at the bottom).
    first = drawn.split('points="')[1].split()[0]
    assert first.startswith("40.0,") and first.endswith(",180.0")


def test_bars_are_as_long_as_their_values() -> None:
    drawn = svg({"type": "bar", "x": "name", "y": "n"}, ["name", "n"], [["a", 10], ["b", 5]])
    assert drawn is not None
    widths = [float(part.split('"')[0]) for part in drawn.split('width="')[2:]]
    assert widths[0] == 2 * widths[1]


def test_what_cannot_be_drawn_is_left_to_the_table() -> None:
    assert svg({"type": "bar", "x": "name", "y": "gone"}, ["name", "n"], [["a", 1]]) is None
    assert svg({"type": "line", "x": "name", "y": "n"}, ["name", "n"], [["a", 1], ["b", 2]]) is None
    assert svg({"type": "table"}, ["name"], [["a"]]) is None
