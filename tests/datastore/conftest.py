"""One parametrised fixture runs every datastore test on SQLite and on PostgreSQL.

PostgreSQL comes from ``PEREGRINE_TEST_POSTGRES_URL`` (``./scripts/test`` starts a throw-away
cluster and sets it). Without it the PostgreSQL half skips, unless ``PEREGRINE_REQUIRE_POSTGRES=1``
(which ``./scripts/test`` also sets): then it fails, so CI cannot pass with the backend untested.
Each test gets an empty database of its own: a new file, or a new PostgreSQL schema dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from peregrine.datastore import Datastore, open_datastore

POSTGRES_URL_VARIABLE = "PEREGRINE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "PEREGRINE_REQUIRE_POSTGRES"


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An autocommit connection pool on the test cluster, for CREATE/DROP DATABASE."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        reason = f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (./scripts/test starts one)"
        if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    engine = create_engine(
        make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        pytest.fail(f"{POSTGRES_URL_VARIABLE} is set but PostgreSQL is unreachable: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def datastore_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """The URL of a new, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{os.fspath(tmp_path)}/peregrine.db"
        return
    # A fresh schema first on the search path isolates a test as well as a fresh database
    # does, in a millisecond instead of a quarter of a second.
    admin: Engine = request.getfixturevalue("postgres_admin")
    schema = f"peregrine_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def datastore(datastore_url: str) -> Iterator[Datastore]:
    """An open, migrated datastore on each backend."""
    store = open_datastore(datastore_url)
    yield store
    store.close()
