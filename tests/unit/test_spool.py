"""The spool keeps finished runs durable and in order while the database is away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunQuery, RunRecord
from layerscope.service.domain.summary import summarize
from layerscope.service.errors import InvalidInput, StoreUnavailable
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.spool import Spool, SpoolingStore, run_from_json, run_to_json
from layerscope.service.store.sql_store import SqlRunStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def run(i: int, run_id: str | None = None, model: str = "m") -> RunRecord:
    return RunRecord(
        run_id=run_id or f"run-{i}",
        model_name=model,
        model_version=1,
        model_sha256="f" * 64,
        kind="diagnose",
        created_at=START + timedelta(seconds=i),
        batch_size=2,
        inputs="probe",
        device="CPU",
        duration_seconds=0.5,
        summaries=(LayerSummaryRecord("dense", "activation", summarize(np.array([[0.0, np.nan], [np.inf, 2.0]]))),),
        findings=(Finding("non-finite", Severity.ERROR, ("dense",), "msg", "fix", {"nan": 1, "ratio": 0.5}),),
    )


def test_a_run_survives_the_trip_through_json_exactly() -> None:
    assert run_from_json(run_to_json(run(1))) == run(1)


class Outage:
    """The real SQLite store, behind a switch that makes it unreachable, as a dead database would be."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store, self.down = store, False

    def validate(self, r: RunRecord) -> None:
        self.store.validate(r)

    def save_run(self, r: RunRecord) -> bool:
        if self.down:
            raise StoreUnavailable("database down")
        return self.store.save_run(r)

    def get_run(self, run_id: str) -> RunRecord:
        return self.store.get_run(run_id)

    def list_runs(self, query: RunQuery):  # type: ignore[no-untyped-def]
        return self.store.list_runs(query)


@pytest.fixture()
def store(tmp_path: Path) -> SqlRunStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    migrate(engine)
    return SqlRunStore(engine)


def test_runs_wait_in_order_and_reach_the_database_exactly_once(store: SqlRunStore, tmp_path: Path) -> None:
    depths: list[int] = []
    outage = Outage(store)
    spooling = SpoolingStore(outage, Spool(tmp_path / "spool", max_runs=3), depths.append)
    spooling.save_run(run(0))
    outage.down = True
    for i in (1, 2, 3):
        spooling.save_run(run(i))
    with pytest.raises(StoreUnavailable, match="holds its limit of 3 runs"):
        spooling.save_run(run(4))
    assert spooling.get_run("run-2") == run(2)  # readable while it waits
    outage.down = False
    spooling.save_run(run(5))  # replays the waiting runs first, then stores this one
    assert spooling.depth == 0 and depths[-1] == 0 and max(depths) == 3
    listed = store.list_runs(RunQuery(limit=10)).runs
    assert [r.run_id for r in listed] == ["run-5", "run-3", "run-2", "run-1", "run-0"]


def test_a_restart_finds_spooled_runs_and_ignores_half_written_files(store: SqlRunStore, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_runs=10)
    spool.put(run(1))
    (tmp_path / "spool" / ".tmp-000000000009-run-9.json").write_text("{half")
    reopened = Spool(tmp_path / "spool", max_runs=10)
    assert reopened.depth == 1
    assert not list((tmp_path / "spool").glob(".tmp-*"))
    assert reopened.replay(store) == 1 and store.get_run("run-1") == run(1)
    assert reopened.replay(store) == 0


def test_a_run_the_database_refuses_for_good_is_set_aside_and_never_blocks_the_rest(
    store: SqlRunStore, tmp_path: Path
) -> None:
    outage = Outage(store)
    spool = Spool(tmp_path / "spool", max_runs=10)
    spooling = SpoolingStore(outage, spool)
    spooling.save_run(run(1, run_id="taken"))
    outage.down = True
    spooling.save_run(run(2, run_id="taken", model="other"))  # same id, another run: the database will refuse it
    spooling.save_run(run(3))
    outage.down = False
    spooling.save_run(run(4))
    assert spooling.depth == 0
    assert [r.run_id for r in store.list_runs(RunQuery(limit=10)).runs] == ["run-4", "run-3", "taken"]
    (kept,) = spool.rejected()
    assert run_from_json(kept.read_text()) == run(2, run_id="taken", model="other")
    assert "already stored" in kept.with_name(kept.stem + ".reason.txt").read_text()


@pytest.mark.parametrize("run_id", ["a/b", "../../escape", "x" * 120, "tab\there", "ünïcode-id"])
def test_client_chosen_ids_never_become_paths(store: SqlRunStore, tmp_path: Path, run_id: str) -> None:
    outage = Outage(store)
    spooling = SpoolingStore(outage, Spool(tmp_path / "spool", max_runs=10))
    outage.down = True
    spooling.save_run(run(1, run_id=run_id))
    assert [p.parent for p in (tmp_path / "spool").rglob("*.json")] == [tmp_path / "spool"]
    assert spooling.get_run(run_id).run_id == run_id
    outage.down = False
    assert spooling.replay() == 1 and store.get_run(run_id).run_id == run_id


def test_a_run_that_could_never_be_stored_is_refused_before_it_is_spooled(store: SqlRunStore, tmp_path: Path) -> None:
    outage = Outage(store)
    spooling = SpoolingStore(outage, Spool(tmp_path / "spool", max_runs=10))
    outage.down = True
    with pytest.raises(InvalidInput, match="at most 128 characters"):
        spooling.save_run(run(1, run_id="y" * 300))
    with pytest.raises(InvalidInput, match="NUL"):
        spooling.save_run(run(1, run_id="nul\x00id"))
    assert spooling.depth == 0
