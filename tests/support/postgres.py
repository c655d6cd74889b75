"""Databases of their own on the real PostgreSQL test server (LAYERSCOPE_TEST_DATABASE_URL)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from layerscope.service.store.engine import create_engine


@contextlib.contextmanager
def sql_ascii_database(server_url: str, encoding: str = "SQL_ASCII") -> Iterator[str]:
    """A new database of encoding SQL_ASCII (what initdb makes under the C locale: PostgreSQL stores bytes
    unchecked and counts lengths in bytes), or of another `encoding` (LATIN1), on the server of `server_url`;
    its URL, dropped afterwards."""
    prefix = "ascii" if encoding == "SQL_ASCII" else encoding.lower()
    name = f"ls_{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                sa.text(f"CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
            )
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        admin.dispose()
