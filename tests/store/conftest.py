"""Fixtures for the store suite: every test runs on SQLite and on PostgreSQL, each on an empty schema.

PostgreSQL comes from LAYERSCOPE_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test); its
parameters are skipped when the variable is unset, and fail under CI=true. Each PostgreSQL test gets a
schema of its own, put first on the search path through the URL, so tests never see each other's rows
(or the tables other suites leave in that database) and a schema costs milliseconds where a database
costs a second.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.sql_store import SqlRunStore

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new schema on the PostgreSQL test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    admin: sa.Engine = request.getfixturevalue("postgres_admin")
    assert POSTGRES_URL
    schema = f"ls_store_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
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
    return SqlRunStore(engine)
