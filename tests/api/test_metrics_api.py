"""``/metrics``: Prometheus' format, for the ``monitoring`` role only, counting what happened."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from peregrine.auth.roles import READ_METRICS, ROLES
from tests.api.conftest import Live


def scrape(live: Live, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=live.base, verify=live.tls, headers=headers, timeout=30) as http:
        return http.get("/metrics")


def samples(live: Live) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = scrape(live, live.tokens["monitoring"])
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_monitoring_role_which_reads_nothing_else(live: Live) -> None:
    assert scrape(live, None).status_code == 401
    refused = scrape(live, live.tokens["reader"])  # results, but not the metrics
    assert refused.status_code == 403
    assert "READ_METRICS" in refused.json()["detail"]
    allowed = scrape(live, live.tokens["monitoring"])
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain; version=")
    assert "peregrine_agents_connected" in allowed.text
    with live.http(live.tokens["monitoring"]) as http:
        assert http.get("/clients").status_code == 403
        assert http.get(f"/clients/{live.client_id}").status_code == 403


def test_only_roles_with_read_metrics_may_scrape(live: Live) -> None:
    """/metrics is outside /api/v1, so the permission matrix leaves it to this test."""
    for role, token in live.tokens.items():
        expected = 200 if READ_METRICS in ROLES[role] else 403
        assert scrape(live, token).status_code == expected, role
    assert {role for role in ROLES if READ_METRICS in ROLES[role]} == {
        "administrator",
        "monitoring",
    }


def test_a_collection_moves_the_ingestion_and_state_metrics(live: Live) -> None:
    before = samples(live)
    assert value(before, "peregrine_agents_connected") >= 1
    assert value(before, "peregrine_enrollments_total") >= 1
    live.collect("Test.Numbers", {"N": 25})
    # A collection for a client that is not connected stays Scheduled: a live state, counted
    # again within the 5 s cache (final states only every 5 minutes).
    offline = f"C.{time.time_ns() & (2**64 - 1):016x}"
    live.server.datastore.clients.enroll(offline, offline.encode(), time.time())
    live.run(live.server.collect(offline, [("Test.Numbers", {"N": 1})], "t"))
    deadline = time.monotonic() + 15
    while True:
        after = samples(live)
        scheduled = value(after, "peregrine_collections", state="Scheduled")
        if scheduled > value(before, "peregrine_collections", state="Scheduled"):
            break
        assert time.monotonic() < deadline, "collections{state=Scheduled} did not move"
        time.sleep(0.5)
    assert (
        value(after, "peregrine_rows_ingested_total")
        - value(before, "peregrine_rows_ingested_total")
        >= 25
    )
    assert value(after, "peregrine_messages_ingested_total") > value(
        before, "peregrine_messages_ingested_total"
    )
    assert value(after, "peregrine_bytes_stored_total") > value(
        before, "peregrine_bytes_stored_total"
    )
    assert value(after, "peregrine_group_commit_batch_size_count") > value(
        before, "peregrine_group_commit_batch_size_count"
    )
    assert value(after, "peregrine_datastore_seconds_count", op="read") > 0
    assert value(after, "peregrine_clients_enrolled") >= 2
    assert ("peregrine_collections", (("state", "Finished"),)) in after
    assert ("peregrine_hunts", (("state", "Running"),)) in after
    assert ("peregrine_event_loop_lag_seconds", ()) in after
    assert ("peregrine_errors_total", (("kind", "source"),)) in after
