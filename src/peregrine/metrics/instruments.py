"""Every metric a frontend process records, defined once so code, dashboard and docs share names.

The objects live in prometheus-client's default registry. Under ``peregrine server --workers N``
the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so each worker writes
its values to memory-mapped files there and whichever worker answers a scrape sums them
(``exposition.py``); gauges say how (``multiprocess_mode``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Group-commit batch sizes (pieces of work per transaction).
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
#: Latencies from a fast SQLite write to a PostgreSQL outage being waited out.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

AGENTS_CONNECTED = Gauge(
    "peregrine_agents_connected",
    "Agents connected to this frontend (all worker processes summed).",
    multiprocess_mode="livesum",
)
ENROLLMENTS = Counter("peregrine_enrollments", "New clients enrolled.")
ENROLLMENTS_REFUSED = Counter(
    "peregrine_enrollments_refused", "Enrollments refused, by reason.", ["reason"]
)
MESSAGES_INGESTED = Counter(
    "peregrine_messages_ingested", "Flow messages from agents stored and acknowledged."
)
ROWS_INGESTED = Counter("peregrine_rows_ingested", "Result rows stored.")
BYTES_STORED = Counter(
    "peregrine_bytes_stored", "Bytes written to the filestore (result rows and upload chunks)."
)
GROUP_COMMIT_BATCH = Histogram(
    "peregrine_group_commit_batch_size",
    "Pieces of work committed in one group-commit transaction.",
    buckets=_BATCH_BUCKETS,
)
GROUP_COMMIT_SECONDS = Histogram(
    "peregrine_group_commit_seconds",
    "Time to run and commit one group-commit batch (outage waits included).",
    buckets=_LATENCY_BUCKETS,
)
DATASTORE_SECONDS = Histogram(
    "peregrine_datastore_seconds",
    "Time a datastore connection was held, by read or write (outside group commits).",
    ["op"],
    buckets=_LATENCY_BUCKETS,
)
BUS_PUBLISH_SECONDS = Histogram(
    "peregrine_bus_publish_seconds",
    "Time to publish one notice on the bus between frontends.",
    ["bus"],
    buckets=_LATENCY_BUCKETS,
)
QUERY_WORKER_KILLS = Counter(
    "peregrine_query_worker_kills",
    "Query workers killed on agents (hard time-out, memory limit or a crash), as reported "
    "with their sources.",
)
ERRORS = Counter("peregrine_errors", "Errors, by kind.", ["kind"])
ALERTS_RAISED = Counter(
    "peregrine_alerts_raised",
    "Alerts raised by rules and stored by this frontend (each alert once in the fleet).",
    ["severity"],
)
ALERTS_FORWARDED = Counter(
    "peregrine_alerts_forwarded",
    "Alerts handed to a destination: sent, failed (after its retries) or dropped (its queue "
    "was full).",
    ["destination", "outcome"],
)
ALERT_MATCH_SECONDS = Histogram(
    "peregrine_alert_match_seconds",
    "Time to match one stored event batch against its rules and store what they raised.",
    buckets=_LATENCY_BUCKETS,
)
ALERT_RULE_FAILURES = Counter(
    "peregrine_alert_rule_failures",
    "Rules that failed on a batch (a column the rows lack, their time limit).",
)
EVENT_LOOP_LAG = Gauge(
    "peregrine_event_loop_lag_seconds",
    "How late the event loop woke a sleeping task, last sample (worst worker).",
    multiprocess_mode="livemax",
)

#: The kinds ``ERRORS`` counts, so a dashboard can list them before any happened.
ERROR_KINDS = (
    "agent_protocol",  # an agent sent something malformed or not its own
    "datastore_unavailable",  # PostgreSQL did not answer (a session or request gave up)
    "storage_full",  # the filestore refused a write
    "group_commit",  # a group-commit transaction failed as a whole
    "source",  # a source of a collection ended in error on its agent
)
for _kind in ERROR_KINDS:
    ERRORS.labels(kind=_kind)
for _reason in ("secret", "rate"):  # a wrong enrollment secret, over the enrollment rate
    ENROLLMENTS_REFUSED.labels(reason=_reason)
