"""Engines are configured per dialect, and a database that cannot be reached is StoreUnavailable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from layerscope.service.domain.runs import RunQuery
from layerscope.service.errors import StoreUnavailable
from layerscope.service.store.engine import SQLITE_BUSY_MS, create_engine
from layerscope.service.store.sql_store import SqlRunStore
from tests.store.conftest import POSTGRES_URL
from tests.store.factory import make_run


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'runs.db'}")  # parent folders are made
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize("url", ["postgresql://u@db/runs", "postgresql+psycopg://u@db/runs", "postgres://u@db/runs"])
def test_postgresql_urls_use_psycopg_3(url: str) -> None:
    engine = create_engine(url)  # connects lazily: no server needed
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    assert engine.pool._pre_ping


OPERATIONS: dict[str, Callable[[SqlRunStore], object]] = {
    "save_run": lambda s: s.save_run(make_run(1)),
    "get_run": lambda s: s.get_run("digits-1"),
    "list_runs": lambda s: s.list_runs(RunQuery()),
    "prune": lambda s: s.prune(datetime.now(UTC)),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_dead_database_is_store_unavailable(operation: str) -> None:
    dead = create_engine("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable, match="run database is unreachable") as caught:
        OPERATIONS[operation](SqlRunStore(dead))
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    dead.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # only a server can drop connections
def test_connections_killed_while_idle_are_replaced(database_url: str, engine: sa.Engine) -> None:
    store = SqlRunStore(engine)
    store.save_run(make_run(1))
    with engine.connect() as conn:
        mine = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = create_engine(POSTGRES_URL or "")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": mine})
    admin.dispose()
    assert store.get_run("digits-1") == make_run(1)  # pool_pre_ping found the dead connection first
