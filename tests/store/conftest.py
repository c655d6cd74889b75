"""Fixtures for the store suite: every test runs on SQLite, on PostgreSQL, and on a PostgreSQL database of
encoding SQL_ASCII, each on an empty schema.

PostgreSQL comes from LAYERSCOPE_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test); its
parameters are skipped when the variable is unset, and fail under CI=true. Each PostgreSQL test gets a
schema of its own, put first on the search path through the URL, so tests never see each other's rows
(or the tables other suites leave in that database) and a schema costs milliseconds where a database
costs a second. The SQL_ASCII database (initdb's default encoding under the C locale: PostgreSQL stores
bytes unchecked and counts lengths in bytes) is created once per session on the same server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from layerscope.service.store.engine import create_engine, server_encoding
from layerscope.service.store.migrations import migrate
from layerscope.service.store.sql_store import SqlRunStore
from tests.support.postgres import sql_ascii_database

POSTGRES_URL = os.environ.get("LAYERSCOPE_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sa.Engine]:
    """One autocommit engine on the test server, to create and drop the per-test schemas."""
    if not POSTGRES_URL:
        if os.environ.get("CI") == "true":  # CI must prove PostgreSQL, never skip it quietly
            pytest.fail("CI must test PostgreSQL: set LAYERSCOPE_TEST_DATABASE_URL")
        pytest.skip("LAYERSCOPE_TEST_DATABASE_URL is not set")
    admin = create_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def sql_ascii_admin(postgres_admin: sa.Engine) -> Iterator[sa.Engine]:
    """An autocommit engine on a database of encoding SQL_ASCII, made on the test server for the session."""
    assert POSTGRES_URL
    with sql_ascii_database(POSTGRES_URL) as url:
        admin = create_engine(url).execution_options(isolation_level="AUTOCOMMIT")
        yield admin
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "sql_ascii"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new schema on the PostgreSQL test server (in its test
    database, or in the session's SQL_ASCII one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("sql_ascii_admin" if request.param == "sql_ascii" else "postgres_admin")
    url = admin.url.render_as_string(hide_password=False)
    schema = f"ls_store_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture()
def bare_engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on the empty database, not migrated."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def engine(bare_engine: sa.Engine) -> sa.Engine:
    migrate(bare_engine)
    return bare_engine


@pytest.fixture()
def store(engine: sa.Engine) -> SqlRunStore:
    """The run store as the server builds it: lengths in bytes where the database counts bytes."""
    return SqlRunStore(engine, encoding=server_encoding(engine))
