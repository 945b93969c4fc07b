"""Result pages sorted and filtered on the server (DuckDB over the result set), for a
collection and for a hunt; bad sorts and filters say what the result set has."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.api.conftest import Live, Objects

pytestmark = pytest.mark.usefixtures("objects")


@pytest.fixture(scope="module")
def numbers(live: Live) -> str:
    return live.collect("Test.Numbers", {"N": 250})


def results(live: Live, flow_id: str, **params: object) -> dict[str, object]:
    with live.http(live.tokens["reader"]) as http:
        answer = http.get(
            f"/collections/{flow_id}/results", params={"artifact": "Test.Numbers", **params}
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_sorted_descending_pages_follow_each_other(live: Live, numbers: str) -> None:
    first = results(live, numbers, sort="n", order="desc", limit=100)
    assert first["total"] == 250
    assert [r["n"] for r in first["rows"]] == list(range(250, 150, -1))
    last = results(live, numbers, sort="n", order="desc", offset=200, limit=100)
    assert [r["n"] for r in last["rows"]] == list(range(50, 0, -1))
    assert set(first["rows"][0]) == {"n", "label"}  # no column of the engine's own


def test_filters_combine_and_count_what_they_keep(live: Live, numbers: str) -> None:
    page = results(live, numbers, filter=["n:>=240", "label:ROW 0000024"], sort="n")
    assert page["total"] == 10
    assert [r["n"] for r in page["rows"]] == list(range(240, 250))
    past = results(live, numbers, filter=["n:>=240"], offset=500)
    assert past["rows"] == [] and past["total"] == 11


@pytest.mark.parametrize("text", ["'; DROP TABLE x; --", "100%", "_", '"', "\\"])
def test_filter_text_is_only_ever_text(live: Live, numbers: str, text: str) -> None:
    page = results(live, numbers, filter=[f"label:{text}"])
    assert page["total"] == 0 and page["rows"] == []


def test_an_unknown_column_says_which_there_are(live: Live, numbers: str) -> None:
    with live.http(live.tokens["reader"]) as http:
        for params in ({"sort": "nope"}, {"filter": "nope:1"}, {"filter": "no colon"}):
            answer = http.get(
                f"/collections/{numbers}/results", params={"artifact": "Test.Numbers", **params}
            )
            assert answer.status_code == 400, answer.text
        assert "a filter is column:text" in answer.json()["detail"]
        sort = http.get(
            f"/collections/{numbers}/results", params={"artifact": "Test.Numbers", "sort": "x"}
        )
        assert sort.json()["detail"].endswith("its columns: n, label")


def test_a_hunts_results_sort_by_client_and_filter(live: Live, objects: Objects) -> None:
    with live.http(live.tokens["reader"]) as http:
        answer = http.get(
            f"/hunts/{objects.hunt_id}/results",
            params={"artifact": "Test.Numbers", "sort": "n", "order": "desc", "filter": "n:<3"},
        )
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert [r["n"] for r in page["rows"]] == [2, 1]
    assert all(r["client_id"] == live.client_id and r["hostname"] for r in page["rows"])


def test_a_sort_past_its_time_out_is_a_504_that_says_what_to_do(live: Live, numbers: str) -> None:
    engine = live.server.services.analysis
    kept = engine.limits
    engine.limits = replace(kept, timeout=1e-6)
    try:
        with live.http(live.tokens["reader"]) as http:
            answer = http.get(
                f"/collections/{numbers}/results",
                params={"artifact": "Test.Numbers", "sort": "n"},
            )
    finally:
        engine.limits = kept
    assert answer.status_code == 504, answer.text
    assert answer.headers["Retry-After"] == "60"
    detail = answer.json()["detail"]
    assert "ran out of time" in detail and "Parquet copy" in detail and "without sorting" in detail
    assert results(live, numbers, sort="n", limit=1)["rows"] == [{"n": 1, "label": "row 00000001"}]
