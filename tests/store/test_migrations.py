"""The shipped migrations build exactly the ORM's schema, and a stale schema is refused by name."""

from __future__ import annotations

from importlib import resources

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from layerscope.service.store.migrations import SchemaMismatch, check_schema, current, head, migrate
from layerscope.service.store.schema import Base
from layerscope.service.store.sql_store import SqlRunStore
from tests.store.factory import make_run


def alembic(engine: sa.Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(resources.files("layerscope.service.store") / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


def test_the_migrations_match_the_models(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == [], f"models and migrations differ: write a migration for {differences}"
    assert current(engine) == head()
    check_schema(engine)


def test_migrating_twice_changes_nothing(engine: sa.Engine) -> None:
    SqlRunStore(engine).save_run(make_run(1))
    migrate(engine)
    assert SqlRunStore(engine).get_run("digits-1") == make_run(1)


def test_an_unmigrated_database_is_refused_by_name(bare_engine: sa.Engine) -> None:
    with pytest.raises(SchemaMismatch, match=rf"has no layerscope schema .*expected revision '{head()}'"):
        check_schema(bare_engine)


def test_a_database_at_another_revision_is_refused_by_name(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(SchemaMismatch, match=rf"revision 'f00d'; expected revision '{head()}'") as caught:
        check_schema(engine)
    assert (caught.value.found, caught.value.expected) == ("f00d", head())


def test_downgrade_removes_everything_and_upgrade_rebuilds_it(engine: sa.Engine) -> None:
    alembic(engine, "downgrade", "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert {"model", "run", "layer_summary", "finding"} <= set(sa.inspect(engine).get_table_names())


def test_an_in_memory_database_keeps_what_the_migration_built() -> None:
    from layerscope.service.store.engine import create_engine

    engine = create_engine("sqlite://")
    migrate(engine)
    store = SqlRunStore(engine)
    store.save_run(make_run(1))
    assert store.get_run("digits-1") == make_run(1)
    engine.dispose()
