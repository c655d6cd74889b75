"""The run store keeps runs exactly, once, and finds them again: on SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from datetime import UTC, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.service.compare import compare
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunQuery, RunRecord
from layerscope.service.domain.training import ProbeResult, ProbeStep
from layerscope.service.errors import InvalidInput, NotFound
from layerscope.service.store.run_json import run_from_json, run_to_json
from layerscope.service.store.sql_store import MAX_PAGE, SqlRunStore
from tests.store.factory import T0, make_run

PLUS_TWO = timezone(timedelta(hours=2))


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


def all_pages(store: SqlRunStore, query: RunQuery) -> list[RunRecord]:
    runs: list[RunRecord] = []
    while True:
        page = store.list_runs(query)
        runs += page.runs
        if page.next_page_token is None:
            return runs
        query = replace(query, page_token=page.next_page_token)


# -- round trip ----------------------------------------------------------------------------------------------


def test_a_run_comes_back_exactly_as_it_was_saved(store: SqlRunStore) -> None:
    original = make_run(1, codes=("dead-units", "non-finite"))
    assert store.save_run(original) is True
    back = store.get_run(original.run_id)
    assert back == original
    assert [f.severity for f in back.findings] == [Severity.WARNING, Severity.ERROR]
    assert all(type(f.severity) is Severity for f in back.findings)
    assert back.created_at.tzinfo is UTC


def test_times_in_any_zone_come_back_as_the_same_instant_in_utc(store: SqlRunStore) -> None:
    aware = (T0 + timedelta(hours=3)).astimezone(PLUS_TWO)
    store.save_run(make_run(1, created_at=aware))
    store.save_run(make_run(2, created_at=(T0 + timedelta(hours=5)).replace(tzinfo=None)))  # naive: UTC
    assert store.get_run("digits-1").created_at == aware
    assert store.get_run("digits-1").created_at.tzinfo is UTC
    assert store.get_run("digits-2").created_at == T0 + timedelta(hours=5)


def test_non_finite_statistics_survive_the_round_trip(store: SqlRunStore) -> None:
    run = make_run(1, layers=1)
    broken = replace(run.summaries[0].summary, std=math.nan, max=math.inf, min=-math.inf, mean=math.nan)
    run = replace(run, summaries=(replace(run.summaries[0], summary=broken),))
    assert store.save_run(run) is True
    back = store.get_run(run.run_id).summaries[0].summary
    assert math.isnan(back.std) and math.isnan(back.mean)
    assert back.max == math.inf and back.min == -math.inf
    assert store.save_run(run) is False  # NaN != NaN must not make a retry look like another run


def test_evidence_is_stored_as_json(store: SqlRunStore) -> None:
    evidence = {"ratio": np.float32(0.5), "shape": (None, 6, 6, 2), "scale": float("inf")}
    finding = Finding("dense-on-spatial", Severity.ERROR, ("head",), "m", "s", evidence)
    store.save_run(replace(make_run(1), findings=(finding,)))
    assert store.get_run("digits-1").findings[0].evidence == {"ratio": 0.5, "shape": [None, 6, 6, 2], "scale": "inf"}


# -- idempotency -------------------------------------------------------------------------------------------


def test_a_retried_write_stores_exactly_once(store: SqlRunStore, engine: sa.Engine) -> None:
    run = make_run(1, codes=("dead-units",))
    assert store.save_run(run) is True
    assert store.save_run(run) is False
    assert (count(engine, "run"), count(engine, "layer_summary"), count(engine, "finding")) == (1, 6, 1)


def test_runs_saved_together_are_stored_as_each_would_be_alone(store: SqlRunStore, engine: sa.Engine) -> None:
    store.save_run(make_run(1))
    other_model = replace(make_run(3, codes=("dead-units",)), model_name="other")
    answers = store.save_runs([make_run(1), make_run(2), other_model, make_run(4)])
    assert answers == [False, True, True, True]  # the first is a retry of a stored run
    for run in (make_run(1), make_run(2), other_model, make_run(4)):
        assert store.get_run(run.run_id) == run
    assert (count(engine, "run"), count(engine, "layer_summary"), count(engine, "model")) == (4, 24, 2)


def test_runs_saved_together_are_all_refused_when_one_is(store: SqlRunStore, engine: sa.Engine) -> None:
    store.save_run(make_run(1))
    with pytest.raises(InvalidInput, match="'digits-1' is already stored"):
        store.save_runs([make_run(2), replace(make_run(1), batch_size=64), make_run(3)])
    assert count(engine, "run") == 1  # nothing of the batch: the caller stores them one at a time to learn which


def test_runs_are_stored_after_the_tables_were_emptied_under_a_running_store(
    store: SqlRunStore, engine: sa.Engine
) -> None:
    """The store keeps each model's row id after its first run; an operator emptying the tables must not
    leave it pointing at a row that is gone (every later run of that model would fail its foreign key)."""
    assert store.save_run(make_run(1)) is True
    with engine.begin() as conn:
        for table in ("finding", "layer_summary", "probe", "run", "model"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    assert store.save_run(make_run(2)) is True
    assert store.get_run("digits-2") == make_run(2)
    assert count(engine, "model") == 1


def test_a_recomputed_retry_is_a_retry_and_the_first_write_wins(store: SqlRunStore) -> None:
    first = make_run(1)
    again = make_run(1, seed=7, created_at=T0 + timedelta(hours=1), codes=())
    again = replace(again, duration_seconds=9.0, device="/device:GPU:0")
    assert store.save_run(first) is True
    assert store.save_run(again) is False
    assert store.get_run("digits-1") == first


def test_concurrent_writers_of_one_run_store_it_once(store: SqlRunStore, engine: sa.Engine) -> None:
    run = make_run(1, layers=20)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        barrier.wait()
        results.append(store.save_run(run))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert (count(engine, "run"), count(engine, "layer_summary"), count(engine, "model")) == (1, 40, 1)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model_version": 2}, "digits:2"),
        ({"kind": "diagnose"}, "kind"),
        ({"batch_size": 64}, "batch_size"),
        ({"inputs": "x: float32[64, 4]"}, "inputs"),
        ({"summaries": make_run(1).summaries[:2]}, "layers"),
    ],
)
def test_another_run_under_a_taken_id_is_refused(store: SqlRunStore, change: dict[str, object], named: str) -> None:
    store.save_run(make_run(1))
    with pytest.raises(InvalidInput, match=rf"'digits-1' is already stored for digits:1 .*{named}"):
        store.save_run(replace(make_run(1), **change))  # type: ignore[arg-type]
    assert store.get_run("digits-1") == make_run(1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"run_id": "r" * 129}, "run_id of at most 128 characters"),
        ({"run_id": ""}, "run_id as a non-empty string"),
        ({"model_name": "m\x00"}, "without NUL"),
        ({"batch_size": -1}, "batch_size as an integer between 0"),
        ({"model_version": 2**31}, "model_version as an integer between 0"),
        ({"kind": "k" * 17}, "kind of at most 16"),
    ],
)
def test_values_that_do_not_fit_are_refused_alike_on_every_database(
    store: SqlRunStore, engine: sa.Engine, change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.save_run(replace(make_run(1), **change))  # type: ignore[arg-type]
    assert count(engine, "run") == 0


def test_a_too_long_layer_name_is_refused_before_anything_is_written(store: SqlRunStore, engine: sa.Engine) -> None:
    run = make_run(1)
    long = replace(run.summaries[-1], layer="block/" * 100)
    with pytest.raises(InvalidInput, match="summary layer of at most 512 characters"):
        store.save_run(replace(run, summaries=(*run.summaries[:-1], long)))
    assert (count(engine, "run"), count(engine, "model")) == (0, 0)


# -- reading -----------------------------------------------------------------------------------------------


def test_an_unknown_run_is_not_found(store: SqlRunStore) -> None:
    with pytest.raises(NotFound, match="stored run with id 'nope'"):
        store.get_run("nope")


def test_pages_cover_every_run_exactly_once_newest_first(store: SqlRunStore) -> None:
    for i in range(23):
        store.save_run(make_run(i, layers=1))
    for i in range(5):  # ties on created_at are broken by run id, across page boundaries too
        store.save_run(make_run(100 + i, layers=1, created_at=T0 + timedelta(minutes=11)))
    listed = all_pages(store, RunQuery(limit=4))
    keys = [(r.created_at, r.run_id) for r in listed]
    assert len(keys) == len(set(keys)) == 28
    assert keys == sorted(keys, reverse=True)


def test_listed_runs_carry_findings_but_not_summaries(store: SqlRunStore) -> None:
    run = make_run(1, codes=("dead-units",))
    store.save_run(run)
    (listed,) = store.list_runs(RunQuery()).runs
    assert listed == replace(run, summaries=())


def test_filters_select_by_model_version_time_and_finding(store: SqlRunStore) -> None:
    for i in range(20):
        model = "digits" if i % 2 else "faces"
        store.save_run(make_run(i, model=model, version=1 + i % 3, codes=("dead-units",) if i % 5 == 0 else ()))

    def ids(**filters: object) -> set[str]:
        return {r.run_id for r in all_pages(store, RunQuery(limit=3, **filters))}  # type: ignore[arg-type]

    assert ids(model_name="digits") == {f"digits-{i}" for i in range(1, 20, 2)}
    assert ids(model_name="faces", model_version=1) == {f"faces-{i}" for i in (0, 6, 12, 18)}
    assert ids(finding_code="dead-units") == {"faces-0", "digits-5", "faces-10", "digits-15"}
    assert ids(finding_code="dead-units", model_name="digits") == {"digits-5", "digits-15"}
    since, until = (T0 + timedelta(minutes=10)).astimezone(PLUS_TWO), T0 + timedelta(minutes=13)
    assert ids(since=since, until=until) == {"faces-10", "digits-11", "faces-12"}  # since in, until out
    assert ids(model_name="nobody") == set()


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1])
def test_a_page_limit_out_of_bounds_is_refused(store: SqlRunStore, limit: int) -> None:
    with pytest.raises(InvalidInput, match=f"between 1 and {MAX_PAGE}; received {limit}"):
        store.list_runs(RunQuery(limit=limit))


@pytest.mark.parametrize("token", ["not-a-token", "bm90IGEgdG9rZW4=", "%%%"])
def test_a_bad_page_token_is_refused(store: SqlRunStore, token: str) -> None:
    with pytest.raises(InvalidInput, match="page token"):
        store.list_runs(RunQuery(page_token=token))


# -- pruning -----------------------------------------------------------------------------------------------


def test_pruning_removes_old_runs_with_their_rows(store: SqlRunStore, engine: sa.Engine) -> None:
    for i in range(6):
        store.save_run(make_run(i, codes=("dead-units",)))
    cutoff = (T0 + timedelta(minutes=4)).astimezone(PLUS_TWO)  # an instant, whatever its zone
    assert store.prune(cutoff) == 4
    assert [r.run_id for r in store.list_runs(RunQuery()).runs] == ["digits-5", "digits-4"]
    assert (count(engine, "layer_summary"), count(engine, "finding")) == (12, 2)
    assert store.prune(cutoff) == 0


# -- training probes -------------------------------------------------------------------------------------------


def probe_run(i: int, losses: tuple[float, ...]) -> RunRecord:
    steps = tuple(
        ProbeStep(
            step=n,
            loss=loss,
            gradient_norms={"dense": loss / 10, "out": math.inf if math.isnan(loss) else 1.0},
            update_ratios={} if n == len(losses) - 1 else {"dense": 1e-3, "out": 2e-3},
            dead_fractions={"dense": 0.25},
            saturated_fractions={},
        )
        for n, loss in enumerate(losses)
    )
    probe = ProbeResult(steps, "Adam(learning_rate=0.001)", "mean_squared_error", ("dense", "out"))
    summary = LayerSummaryRecord("dense", "kernel_gradient", make_run(i).summaries[1].summary)
    return replace(make_run(i, codes=("exploding-gradients",)), probe=probe, summaries=(summary,))


def test_a_probe_and_gradient_summaries_come_back_exactly_even_when_they_diverged(
    store: SqlRunStore, engine: sa.Engine
) -> None:
    run = probe_run(1, (2.0, 1e30, math.nan))
    store.save_run(run)
    back = store.get_run(run.run_id)
    assert back.probe is not None and run.probe is not None
    assert back.summaries == run.summaries
    assert [s.loss for s in back.probe.steps][:2] == [2.0, 1e30] and math.isnan(back.probe.steps[2].loss)
    assert back.probe.steps[2].gradient_norms == {"dense": pytest.approx(math.nan, nan_ok=True), "out": math.inf}
    assert back.probe.steps[0] == run.probe.steps[0] and back.probe.learning_layers == ("dense", "out")
    assert store.save_run(run) is False  # a retry stores nothing twice
    assert count(store._engine, "probe") == 1  # type: ignore[attr-defined]
    assert all(r.probe is None for r in store.list_runs(RunQuery()).runs)  # listing leaves probes out


def test_compare_covers_probes(store: SqlRunStore) -> None:
    a, b = probe_run(1, (2.0, 1.5, 1.0)), probe_run(2, (3.0, 2.0, 0.5))
    store.save_run(a)
    store.save_run(b)
    change = compare(store.get_run(a.run_id), store.get_run(b.run_id)).probe
    assert change is not None
    assert (change.first_loss_delta, change.last_loss_delta) == (1.0, -0.5)
    assert change.gradient_norm_deltas == {"dense": pytest.approx(0.1), "out": 0.0}


def test_pruning_removes_probes(store: SqlRunStore, engine: sa.Engine) -> None:
    store.save_run(probe_run(1, (2.0, 1.0)))
    assert store.prune(T0 + timedelta(days=1)) == 1
    assert count(store._engine, "probe") == 0  # type: ignore[attr-defined]


def test_the_spool_keeps_probes() -> None:
    run = probe_run(1, (2.0, math.inf))
    back = run_from_json(run_to_json(run))
    assert back.probe is not None and back.probe.steps[0] == run.probe.steps[0]  # type: ignore[union-attr]
    assert back.probe.steps[1].loss == math.inf
