"""The run store keeps runs exactly, once, and finds them again: on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from layerscope.service.domain import Finding, LayerSummaryRecord, RunQuery, RunRecord, Severity, summarize
from layerscope.service.errors import InvalidInput, NotFound, StoreUnavailable
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import check_schema, head
from layerscope.service.store.repository import RunStore
from layerscope.service.store.schema import Base

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
RNG = np.random.default_rng(0)


def run(i: int, model: str = "digits", version: int = 1, codes: tuple[str, ...] = (), layers: int = 3) -> RunRecord:
    return RunRecord(
        run_id=f"{model}-{i}",
        model_name=model,
        model_version=version,
        model_sha256=f"{version:064d}",
        kind="diagnose" if codes else "capture",
        created_at=T0 + timedelta(minutes=i),
        batch_size=8,
        inputs="x: float32[8, 4]",
        device="/device:CPU:0",
        duration_seconds=0.25,
        summaries=tuple(
            LayerSummaryRecord(f"layer_{j}", kind, summarize(RNG.normal(size=(8, 4))))
            for j in range(layers)
            for kind in ("activation", "kernel")
        ),
        findings=tuple(
            Finding(code, Severity.WARNING, ("layer_1",), f"{code} message", "fix it", {"fraction": 0.9, "n": 3})
            for code in codes
        ),
    )


def test_a_run_comes_back_exactly_as_it_was_saved(store: RunStore) -> None:
    original = run(1, codes=("dead-units", "non-finite"))
    assert store.save_run(original) is True
    back = store.get_run(original.run_id)
    assert back == original
    assert back.created_at.tzinfo is not None


def test_a_retried_write_stores_nothing_more(store: RunStore, engine: sa.Engine) -> None:
    assert store.save_run(run(1)) is True
    assert store.save_run(run(1)) is False
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM run")) == 1
        assert conn.scalar(sa.text("SELECT count(*) FROM layer_summary")) == 6


def test_a_different_run_under_a_taken_id_is_refused(store: RunStore) -> None:
    store.save_run(run(1))
    with pytest.raises(InvalidInput, match="already stored for digits:1"):
        store.save_run(run(1, version=2))


def test_an_unknown_run_is_not_found(store: RunStore) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        store.get_run("nope")


def test_listing_filters_and_pages_cover_every_run_exactly_once(store: RunStore) -> None:
    for i in range(25):
        store.save_run(run(i, model="digits" if i % 2 else "faces", codes=("dead-units",) if i % 5 == 0 else ()))
    seen: list[str] = []
    token = None
    while True:
        page = store.list_runs(RunQuery(limit=7, page_token=token))
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 25
    created = [store.get_run(r).created_at for r in seen]
    assert created == sorted(created, reverse=True)
    digits = store.list_runs(RunQuery(model_name="digits", limit=100)).runs
    assert {r.model_name for r in digits} == {"digits"} and len(digits) == 12
    dead = store.list_runs(RunQuery(finding_code="dead-units", limit=100)).runs
    assert sorted(r.run_id for r in dead) == sorted(f"{'digits' if i % 2 else 'faces'}-{i}" for i in (0, 5, 10, 15, 20))
    window = store.list_runs(RunQuery(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=13))).runs
    assert len(window) == 3


def test_pruning_removes_old_runs_with_their_rows(store: RunStore, engine: sa.Engine) -> None:
    for i in range(6):
        store.save_run(run(i, codes=("dead-units",)))
    assert store.prune(T0 + timedelta(minutes=4)) == 4
    assert [r.run_id for r in store.list_runs(RunQuery()).runs] == ["digits-5", "digits-4"]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM layer_summary")) == 12
        assert conn.scalar(sa.text("SELECT count(*) FROM finding")) == 2


def test_a_bad_page_token_is_an_invalid_argument(store: RunStore) -> None:
    with pytest.raises(InvalidInput, match="page token"):
        store.list_runs(RunQuery(page_token="not-a-token"))


def test_the_migrations_match_the_models_and_the_schema_is_current(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    check_schema(engine)
    assert head() == "0001"


def test_an_unreachable_database_is_store_unavailable() -> None:
    dead = create_engine("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        RunStore(dead).save_run(run(1))
    dead.dispose()
