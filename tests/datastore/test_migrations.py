"""Migrations build the schema on an empty database, match the models, and re-run as no-ops."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from peregrine.datastore import open_datastore
from peregrine.datastore.database import Database, parse_url
from peregrine.datastore.migrate import alembic_config, head_revision
from peregrine.datastore.schema import metadata


def test_head_is_the_newest_revision() -> None:
    assert head_revision() == "0008"


def test_open_builds_the_schema_on_an_empty_database(datastore_url: str) -> None:
    engine = create_engine(parse_url(datastore_url))
    try:
        assert inspect(engine).get_table_names() == []
        with open_datastore(datastore_url) as store:
            assert store.revision() == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert tables == {
            "alembic_version",
            "clients",
            "flows",
            "tasks",
            "hunts",
            "hunt_clients",
            "users",
            "tokens",
            "sessions",
            "audit",
            "notebooks",
            "notebook_cells",
            "timelines",
            "alert_rules",
            "alert_rule_versions",
            "alerts",
            "alert_window_hits",
            "event_assignments",
            "event_status",
        }
        indexes = {index["name"] for index in inspect(engine).get_indexes("flows")}
        assert {"ix_flows_client_created", "ix_flows_state", "ix_flows_hunt_id"} <= indexes
        indexes = {index["name"] for index in inspect(engine).get_indexes("audit")}
        assert {"ix_audit_time", "ix_audit_actor", "ix_audit_action", "ix_audit_target"} <= indexes
    finally:
        engine.dispose()


def test_second_open_keeps_data_and_revision(datastore_url: str) -> None:
    with open_datastore(datastore_url) as store:
        store.clients.enroll("C.0000000000000001", b"key", 1.0)
    with open_datastore(datastore_url) as store:
        assert store.revision() == head_revision()
        assert store.clients.count() == 1


def test_migrated_schema_matches_the_models(datastore_url: str) -> None:
    open_datastore(datastore_url).close()
    engine = create_engine(parse_url(datastore_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_flows_stored_before_expiry_existed_keep_their_data(datastore_url: str) -> None:
    """0003 -> 0004 adds flows.expires; a flow already waiting keeps everything, with no
    expiry of its own (the server's default then applies)."""
    db = Database(datastore_url)
    try:
        with db.write() as conn:
            command.upgrade(alembic_config(conn), "0003")
            conn.exec_driver_sql(
                "INSERT INTO clients (client_id, public_key, first_seen, last_seen, "
                "ip_addresses, mac_addresses, users, labels) "
                "VALUES ('C.0000000000000001', 'k', 1, 1, '[]', '[]', '[]', '[]')"
            )
            conn.exec_driver_sql(
                "INSERT INTO flows (flow_id, client_id, artifacts, request, creator, created, "
                "state, sources) VALUES ('F.0000000000000001', 'C.0000000000000001', '[]', "
                "'{}', 'alice', 5, 'Scheduled', '{}')"
            )
    finally:
        db.close()
    with open_datastore(datastore_url) as store:
        assert store.revision() == head_revision()
        flow = store.collections.get("F.0000000000000001")
        assert flow is not None
        assert (flow.state, flow.creator, flow.created, flow.expires) == (
            "Scheduled",
            "alice",
            5.0,
            None,
        )


def test_flows_stored_before_warning_counts_existed_count_none(datastore_url: str) -> None:
    """0004 -> 0005 adds flows.warning_count; a flow stored before has 0 warnings."""
    db = Database(datastore_url)
    try:
        with db.write() as conn:
            command.upgrade(alembic_config(conn), "0004")
            conn.exec_driver_sql(
                "INSERT INTO clients (client_id, public_key, first_seen, last_seen, "
                "ip_addresses, mac_addresses, users, labels) "
                "VALUES ('C.0000000000000001', 'k', 1, 1, '[]', '[]', '[]', '[]')"
            )
            conn.exec_driver_sql(
                "INSERT INTO flows (flow_id, client_id, artifacts, request, creator, created, "
                "state, sources, row_count) VALUES ('F.0000000000000001', 'C.0000000000000001', "
                "'[]', '{}', 'alice', 5, 'Finished', '{}', 7)"
            )
    finally:
        db.close()
    with open_datastore(datastore_url) as store:
        assert store.revision() == head_revision()
        flow = store.collections.get("F.0000000000000001")
        assert flow is not None
        assert (flow.state, flow.rows, flow.warnings) == ("Finished", 7, 0)
        assert store.collections.apply("F.0000000000000001", 1, 6.0, warnings=3)
        flow = store.collections.get("F.0000000000000001")
        assert flow is not None and flow.warnings == 3
