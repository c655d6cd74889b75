"""Text survives every database encoding: a SQL_ASCII PostgreSQL database (initdb's default under the C locale)
once crash-looped the server in SQLAlchemy's version check, because libpq took the database's encoding and
psycopg returned bytes. Every connection now speaks UTF-8; a SQL_ASCII database stores those bytes unchecked
and counts its length limits in bytes, which the store checks up front."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import RunQuery, RunRecord
from layerscope.service.errors import InvalidInput
from layerscope.service.store.engine import SQL_ASCII, create_engine, encoding_warning, server_encoding, text_codec
from layerscope.service.store.migrations import current, head, migrate
from layerscope.service.store.spool import Spool
from layerscope.service.store.sql_store import SqlRunStore
from tests.store.factory import make_run
from tests.support.postgres import sql_ascii_database

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
    with pytest.raises(InvalidInput, match="too long"):  # the database's own words, when the store cannot know
        SqlRunStore(engine).save_run(run)


def test_only_sql_ascii_gets_a_start_up_warning_that_names_the_fix() -> None:
    assert encoding_warning("UTF8", "postgresql://u@db/runs") is None
    assert encoding_warning("LATIN1", "postgresql://u@db/runs") is None
    line = encoding_warning(SQL_ASCII, "postgresql://u@db/runs")
    assert line is not None and "\n" not in line
    assert "'runs' has encoding SQL_ASCII" in line
    assert "CREATE DATABASE \"runs\" ENCODING 'UTF8' TEMPLATE template0" in line


@pytest.fixture(scope="module")
def latin1_engine(postgres_admin: sa.Engine) -> Iterator[sa.Engine]:
    """A migrated PostgreSQL database of encoding LATIN1: it holds é but not 数 (the server converts the
    connection's UTF-8 and refuses what LATIN1 has no place for)."""
    with sql_ascii_database(postgres_admin.url.render_as_string(hide_password=False), "LATIN1") as url:
        engine = create_engine(url)
        migrate(engine)
        yield engine
        engine.dispose()


def test_a_latin1_database_refuses_names_it_cannot_hold_up_front_and_keeps_those_it_can(
    latin1_engine: sa.Engine,
) -> None:
    assert server_encoding(latin1_engine) == "LATIN1"
    store = SqlRunStore(latin1_engine, encoding="LATIN1")
    kept = replace(make_run(1, run_id="latin-1"), model_name="modèle-é")
    assert store.save_run(kept) is True and store.get_run("latin-1").model_name == "modèle-é"
    refusal = r"in characters the run database's encoding LATIN1 can hold; received '.*', whose '数' it cannot"
    with pytest.raises(InvalidInput, match=refusal):
        store.validate(non_ascii_run())  # what Capture and Diagnose check before they answer


def test_a_run_the_database_cannot_hold_is_set_aside_and_never_blocks_the_spool(
    latin1_engine: sa.Engine, tmp_path: Path
) -> None:
    """A store that does not know the encoding (or a database that refuses for another reason) must not stall
    the writer: the database's refusal is InvalidInput, which the spool sets aside with the reason."""
    unaware = SqlRunStore(latin1_engine)
    with pytest.raises(InvalidInput, match=r"Expected values the run database can hold; it refused run"):
        unaware.save_run(replace(non_ascii_run(), run_id="cannot-hold"))
    spool: Spool[RunRecord] = Spool(tmp_path / "spool", max_runs=10)
    spool.put(replace(non_ascii_run(), run_id="cannot-hold-2"))
    spool.put(make_run(2, run_id="after-it"))
    assert spool.replay(unaware) == 1
    assert unaware.get_run("after-it").run_id == "after-it"
    assert [p.name.endswith(".json") for p in spool.rejected()] == [True]
    assert "LATIN1" in next((tmp_path / "spool" / "rejected").glob("*.reason.txt")).read_text()


@pytest.mark.parametrize(
    ("encoding", "codec"),
    [("UTF8", None), (SQL_ASCII, None), ("LATIN1", "iso8859-1"), ("LATIN9", "iso8859-15"), ("WIN1252", "cp1252"),
     ("ISO_8859_5", "iso8859-5"), ("EUC_JP", "euc_jp"), ("SJIS", "shift_jis"), ("MULE_INTERNAL", None)],
)  # fmt: skip
def test_each_postgresql_encoding_is_checked_with_python_s_codec_for_it(encoding: str, codec: str | None) -> None:
    assert text_codec(encoding) == codec
