"""Alembic's entry point: runs on the connection ``peregrine.datastore.migrate`` hands it."""

from __future__ import annotations

from alembic import context

from peregrine.datastore.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Peregrine runs its migrations from code (peregrine.datastore.migrate.upgrade), "
        "which passes a connection; the alembic command line alone cannot."
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
