"""Text survives every database encoding: a SQL_ASCII PostgreSQL database (initdb's default under the C locale)
once crash-looped the server in SQLAlchemy's version check, because libpq took the database's encoding and
psycopg returned bytes. Every connection now speaks UTF-8; a SQL_ASCII database stores those bytes unchecked
and counts its length limits in bytes, which the store checks up front."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import RunQuery, RunRecord
from layerscope.service.errors import InvalidInput
from layerscope.service.store.engine import SQL_ASCII, create_engine, encoding_warning, server_encoding
from layerscope.service.store.migrations import current, head, migrate
from layerscope.service.store.sql_store import SqlRunStore
from tests.store.factory import make_run

MODEL = "modèle-数字"
LAYER = "couche_été/層"


def non_ascii_run() -> RunRecord:
    run = make_run(1, model=MODEL, codes=("dead-units",))
    summaries = tuple(replace(s, layer=f"{LAYER}_{i}") for i, s in enumerate(run.summaries))
    finding = Finding("dead-units", Severity.WARNING, (f"{LAYER}_0",), f"Dense '{LAYER}_0': 90 % morts", "Ünits", {})
    return replace(run, summaries=summaries, findings=(finding,))


@pytest.mark.parametrize("database_url", ["postgresql", "sql_ascii"], indirect=True)
def test_a_database_of_any_encoding_migrates_and_every_connection_speaks_utf8(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        migrate(engine)  # the start-up step that crashed: SQLAlchemy's first query is its version check
        assert current(engine) == head()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW client_encoding").scalar() == "UTF8"
            assert isinstance(conn.exec_driver_sql("SELECT current_database()").scalar(), str)
        expected = SQL_ASCII if "ls_ascii_" in database_url else "UTF8"
        assert server_encoding(engine) == expected
    finally:
        engine.dispose()


def test_non_ascii_model_layer_and_finding_text_round_trip(store: SqlRunStore, engine: sa.Engine) -> None:
    run = non_ascii_run()
    assert store.save_run(run) is True
    assert store.get_run(run.run_id) == run
    assert [r.run_id for r in store.list_runs(RunQuery(model_name=MODEL)).runs] == [run.run_id]
    assert store.save_run(run) is False  # a retry is recognised by its non-ASCII names too
    if engine.dialect.name == "postgresql":  # stored as UTF-8 bytes, so any UTF-8 client reads the same text
        with engine.connect() as conn:
            octets = conn.execute(sa.text("SELECT octet_length(name) FROM model WHERE name = :n"), {"n": MODEL})
            assert octets.scalar_one() == len(MODEL.encode())


def test_a_name_short_in_characters_but_long_in_bytes_is_refused_only_where_lengths_count_bytes(
    store: SqlRunStore, engine: sa.Engine
) -> None:
    name = "é" * 100  # 100 characters, 200 bytes in UTF-8; the model name column holds 128
    run = make_run(1, model=name, run_id="r-1")
    if server_encoding(engine) != SQL_ASCII:
        assert store.save_run(run) is True and store.get_run(run.run_id).model_name == name
        return
    refusal = r"model_name of at most 128 bytes in UTF-8 \(.*SQL_ASCII.*\); received 100 characters in 200 bytes"
    with pytest.raises(InvalidInput, match=refusal):
        store.validate(run)  # what Capture and Diagnose check before they answer
    with pytest.raises(InvalidInput, match="SQL_ASCII"):
        store.save_run(run)
    with pytest.raises(sa.exc.DataError, match="too long"):  # what the database alone would have said, too late
        SqlRunStore(engine).save_run(run)


def test_only_sql_ascii_gets_a_start_up_warning_that_names_the_fix() -> None:
    assert encoding_warning("UTF8", "postgresql://u@db/runs") is None
    assert encoding_warning("LATIN1", "postgresql://u@db/runs") is None
    line = encoding_warning(SQL_ASCII, "postgresql://u@db/runs")
    assert line is not None and "\n" not in line
    assert "'runs' has encoding SQL_ASCII" in line
    assert "CREATE DATABASE \"runs\" ENCODING 'UTF8' TEMPLATE template0" in line
