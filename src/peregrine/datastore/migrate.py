"""Schema migrations: Alembic, run from code at open, with no alembic.ini.

The migration scripts ship inside the package (``migrations/``). ``upgrade`` brings a database to
the newest revision in one transaction; on PostgreSQL an advisory lock makes frontends that start
together take turns, and on SQLite the write lock does the same.

To write a new revision, change ``schema.py`` and then (against a database at head)::

    from alembic import command
    with database.write() as connection:
        command.revision(alembic_config(connection), "what changed", autogenerate=True)

and rename the file it writes to ``NNNN_what_changed.py`` with ``revision = "NNNN"``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

#: Any fixed number: the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x50455245


def migrations_path() -> Path:
    """The folder of migration scripts inside the installed package."""
    return Path(str(resources.files("peregrine.datastore") / "migrations"))


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code; env.py runs on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the package knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at, or None for an empty one."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Bring the database to head inside the caller's transaction; a no-op when it is there."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")
