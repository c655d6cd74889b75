"""Alembic migrations, shipped inside the package and applied on a shared connection at start-up.

The scripts are found through `importlib.resources`, so an installed wheel migrates without an
alembic.ini or a source checkout. `migrate` hands Alembic the caller's open connection (through
`config.attributes`, read by env.py), so the upgrade runs in the caller's transaction and even an
in-memory SQLite database keeps what it created.
"""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


class SchemaMismatch(RuntimeError):
    """The database's schema revision is not the one this code was written for."""

    def __init__(self, found: str | None, expected: str | None) -> None:
        self.found = found
        self.expected = expected
        where = f"is at revision {found!r}" if found else "has no layerscope schema (no alembic_version row)"
        super().__init__(
            f"The run database {where}; expected revision {expected!r}. Start `layerscope serve` once "
            "(it migrates at start-up) or call layerscope.service.store.migrations.migrate(engine); a revision "
            "newer than expected means this layerscope is older than the database: upgrade layerscope."
        )


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("layerscope.service.store") / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str | None:
    """The newest revision shipped in this package."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (creating it on an empty database), in one transaction."""
    with engine.begin() as connection:
        command.upgrade(_config(connection), "head")


def check_schema(engine: sa.Engine) -> None:
    """Refuse to run on a schema of another revision, naming the found and expected ones and the fix.

    For a process that must not migrate by itself (a read-only replica, a second server started
    against a database a newer version already upgraded).
    """
    found, expected = current(engine), head()
    if found != expected:
        raise SchemaMismatch(found, expected)
