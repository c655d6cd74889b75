"""The same storage tests on SQLite and on a real PostgreSQL (LAYERSCOPE_TEST_DATABASE_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.repository import RunStore

POSTGRES = os.environ.get("LAYERSCOPE_TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: a file for SQLite, a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    if not POSTGRES:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test PostgreSQL: set LAYERSCOPE_TEST_DATABASE_URL")
        pytest.skip("LAYERSCOPE_TEST_DATABASE_URL is not set")
    name = f"layerscope_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture()
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture()
def store(engine: sa.Engine) -> RunStore:
    return RunStore(engine)
