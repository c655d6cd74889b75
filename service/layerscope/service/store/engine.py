"""Engines for the run store: SQLite (WAL, busy timeout) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from layerscope.service.store import json_text

SQLITE_BUSY_MS = 10_000
CLIENT_ENCODING = "utf8"
SQL_ASCII = "SQL_ASCII"


def create_engine(url: str) -> sa.Engine:
    """An engine for a run database URL: `sqlite:///path` (the default) or `postgresql://...`.

    A bare `postgresql://` would pick psycopg2, which is not installed; psycopg 3 is. `pool_pre_ping`
    makes a PostgreSQL connection that died while the database was away be replaced instead of failing the
    next write, so the spool drains as soon as the database returns. PostgreSQL connects with a timeout, so an
    unreachable server is reported (as StoreUnavailable, by the repository) in seconds, not minutes.

    Every PostgreSQL connection speaks UTF-8 (`client_encoding`), whatever the database's encoding: libpq
    otherwise takes the database's, and on a SQL_ASCII database (initdb's default under the C locale)
    psycopg then returns bytes, not str, and SQLAlchemy's first query (the version check) fails with
    "cannot use a string pattern on a bytes-like object". The server converts UTF-8 to any other encoding
    itself; SQL_ASCII converts nothing, so the bytes stored are UTF-8 and read back as the same text (see
    `server_encoding` for what that database cannot check).

    JSON columns are written by orjson (`json_text.dumps`), which writes a non-finite float as null: the
    store hands them finite values only (a broken unit activity is None, evidence goes through `jsonable`).
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
            json_serializer=json_text.dumps,  # no pre-ping: a file has no connection to lose (it cost a query a write)
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=10,
        connect_args={"connect_timeout": 5, "client_encoding": CLIENT_ENCODING},
        json_serializer=json_text.dumps,
    )


def server_encoding(engine: sa.Engine) -> str:
    """How the database stores text, as PostgreSQL names it ('UTF8', 'SQL_ASCII', 'LATIN1', ...); SQLite
    always stores UTF-8. One query: call it once, at start-up.

    SQL_ASCII is no encoding: PostgreSQL stores the bytes it is sent without validating them, and its
    length limits (VARCHAR(n)) count bytes, so a name of non-ASCII characters reaches a column's limit in
    fewer characters (`SqlRunStore(..., encoding=SQL_ASCII)` refuses those up front).
    """
    if engine.dialect.name != "postgresql":
        return "UTF8"
    with engine.connect() as connection:
        return str(connection.exec_driver_sql("SHOW server_encoding").scalar_one())


_PYTHON_CODECS = {"UHC": "cp949", "EUC_CN": "gb2312", "KOI8R": "koi8_r", "KOI8U": "koi8_u", "SJIS": "shift_jis"}


def text_codec(encoding: str) -> str | None:
    """Python's codec for a PostgreSQL server encoding that holds only some characters (LATIN1, WIN1252,
    EUC_JP, ...), so text can be checked before it is written; None where any text goes (UTF8, and SQL_ASCII,
    which checks nothing) and for an encoding Python does not know (the database then refuses by itself)."""
    if encoding in ("UTF8", SQL_ASCII):
        return None
    name = _PYTHON_CODECS.get(encoding) or ("cp" + encoding[3:] if encoding.startswith("WIN") else encoding)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def encoding_warning(encoding: str, url: str) -> str | None:
    """One log line for a database whose encoding checks nothing (SQL_ASCII), saying what it means and how to
    change it; None for a real encoding."""
    if encoding != SQL_ASCII:
        return None
    database = make_url(url).database or "layerscope"
    return (
        f"the run database {database!r} has encoding SQL_ASCII: PostgreSQL checks no text there, so layerscope "
        "stores UTF-8 bytes and counts name limits in bytes; to have the database check them, create it with "
        f"CREATE DATABASE \"{database}\" ENCODING 'UTF8' TEMPLATE template0 and copy the runs over with pg_dump"
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Once per connection: WAL lets readers and the writer work together; foreign keys are off by default."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
