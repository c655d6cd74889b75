"""The spool keeps finished runs durable and in order, behind the response and while the database is away; the
run writer moves them into the database exactly once."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunQuery, RunRecord
from layerscope.service.domain.summary import summarize
from layerscope.service.errors import InvalidInput, StoreUnavailable
from layerscope.service.store import spool as spool_module
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.run_json import run_from_json, run_to_json
from layerscope.service.store.run_writer import RunWriter
from layerscope.service.store.spool import REPLAY_BATCH, Spool
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


@pytest.mark.parametrize("odd", [0.25, 1e308, 5e-324, math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("where", ["std", "unit_activity", "duration_seconds"])
def test_a_capture_run_keeps_every_float_exactly_finite_or_not(odd: float, where: str) -> None:
    """Runs without findings are written by orjson, which would write NaN and Infinity as null: those go
    through json instead, and both read back the same floats, bit for bit."""
    summary = summarize(np.array([[0.5, 1.0], [3.0, 0.0]]))
    if where == "std":
        summary = dataclasses.replace(summary, std=odd)
    if where == "unit_activity":
        summary = dataclasses.replace(summary, unit_activity=(0.1, odd, 1 / 3))
    original = dataclasses.replace(
        run(1),
        findings=(),
        summaries=(LayerSummaryRecord("dense", "activation", summary),),
        duration_seconds=odd if where == "duration_seconds" else 0.5,
    )
    back = run_from_json(run_to_json(original))
    assert repr(back) == repr(original)  # repr: NaN equals itself there, and 0.1 must stay 0.1
    written = run_to_json(original)
    assert ("NaN" in written or "Infinity" in written) == (not math.isfinite(odd))


class Outage:
    """The real SQLite store, behind a switch that makes it unreachable, as a dead database would be."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store, self.down = store, False

    def validate(self, r: RunRecord) -> None:
        self.store.validate(r)

    def save_run(self, r: RunRecord) -> bool:
        return self.save_runs([r])[0]

    def save_runs(self, runs: Sequence[RunRecord]) -> list[bool]:
        if self.down:
            raise StoreUnavailable("database down")
        return self.store.save_runs(runs)

    def retried(self, r: RunRecord) -> bool:
        if self.down:
            raise StoreUnavailable("database down")
        return self.store.retried(r)

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
    writer = RunWriter(outage, Spool(tmp_path / "spool", max_runs=3), depths.append)
    writer.save_run(run(0))
    assert writer.get_run("run-0") == run(0)  # accepted: readable before the writer stored it
    writer.replay()
    outage.down = True
    for i in (1, 2, 3):
        writer.save_run(run(i))
    with pytest.raises(StoreUnavailable, match="holds its limit of 3 runs"):
        writer.save_run(run(4))
    assert writer.get_run("run-2") == run(2)  # readable while it waits
    assert writer.replay() == 0 and writer.depth == 3  # the database is away: nothing moves, nothing is lost
    outage.down = False
    assert writer.replay() == 3
    writer.save_run(run(5))
    writer.replay()
    assert writer.depth == 0 and depths[-1] == 0 and max(depths) == 3
    listed = store.list_runs(RunQuery(limit=10)).runs
    assert [r.run_id for r in listed] == ["run-5", "run-3", "run-2", "run-1", "run-0"]


def test_a_listing_waits_for_the_runs_accepted_before_it(store: SqlRunStore, tmp_path: Path) -> None:
    writer = RunWriter(store, Spool(tmp_path / "spool", max_runs=10), retry_seconds=60)
    writer.start()
    try:
        for i in range(5):
            writer.save_run(run(i), fresh=True)
        assert len(writer.list_runs(RunQuery(limit=10)).runs) == 5  # read-your-writes, behind the response
    finally:
        assert writer.stop() == 0


def test_the_writer_waits_its_delay_but_readers_and_a_stop_never_do(store: SqlRunStore, tmp_path: Path) -> None:
    """A delay longer than a listing's catch-up wait (5 s): were the listing to wait out the delay, it would
    answer without the runs."""
    writer = RunWriter(store, Spool(tmp_path / "spool", max_runs=10), retry_seconds=60, delay=60)
    writer.start()
    try:
        writer.save_run(run(0), fresh=True)
        time.sleep(0.3)
        assert not store.list_runs(RunQuery(limit=10)).runs  # the database has not got it yet...
        assert writer.get_run("run-0") == run(0)  # ...and a reader finds it in the spool
        assert [r.run_id for r in writer.list_runs(RunQuery(limit=10)).runs] == ["run-0"]
        writer.save_run(run(1), fresh=True)
    finally:
        assert writer.stop() == 0  # written on the way out, not after the delay
    assert len(store.list_runs(RunQuery(limit=10)).runs) == 2


def test_a_retry_is_accepted_once_and_another_run_under_its_id_is_refused(store: SqlRunStore, tmp_path: Path) -> None:
    writer = RunWriter(store, Spool(tmp_path / "spool", max_runs=10))
    assert writer.save_run(run(1, run_id="mine")) is True
    assert writer.save_run(run(1, run_id="mine")) is False  # a retry while it waits: nothing more to write
    with pytest.raises(InvalidInput, match="already accepted"):
        writer.save_run(run(2, run_id="mine", model="other"))
    writer.replay()
    assert writer.save_run(run(1, run_id="mine")) is False  # a retry once stored
    with pytest.raises(InvalidInput, match="already stored"):
        writer.save_run(run(2, run_id="mine", model="other"))
    assert [r.run_id for r in store.list_runs(RunQuery(limit=10)).runs] == ["mine"]


def test_a_restart_finds_spooled_runs_and_cuts_off_a_half_written_one(store: SqlRunStore, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_runs=10)
    spool.put(run(1))
    (journal,) = (tmp_path / "spool").glob("*.journal")
    with journal.open("ab") as f:
        f.write(b'0123abcd {"run_id": "run-9", "half')  # the process died in the middle of an append
    reopened = Spool(tmp_path / "spool", max_runs=10)
    assert reopened.depth == 1
    reopened.put(run(2))  # appended after the cut, not glued to the half line
    assert reopened.replay(store) == 2 and store.get_run("run-1") == run(1) and store.get_run("run-2") == run(2)
    assert reopened.replay(store) == 0 and Spool(tmp_path / "spool", max_runs=10).depth == 0


def test_a_restart_replays_only_what_was_not_stored(store: SqlRunStore, tmp_path: Path) -> None:
    outage = Outage(store)
    spool = Spool(tmp_path / "spool", max_runs=10)
    for i in range(3):
        spool.put(run(i))
    assert spool.replay(outage) == 3
    outage.down = True
    for i in range(3, 5):
        spool.put(run(i))
    assert spool.replay(outage) == 0
    reopened = Spool(tmp_path / "spool", max_runs=10)
    assert reopened.depth == 2 and reopened.waiting({"run-1", "run-3", "run-4"}) == {"run-3", "run-4"}
    assert reopened.find("run-4") == run(4) and reopened.find("run-1") is None


def test_a_crash_between_storing_and_marking_stores_each_run_once(store: SqlRunStore, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_runs=10)
    for i in range(3):
        spool.put(run(i))
    assert spool.replay(store) == 3
    for done in (tmp_path / "spool").glob("*.done"):
        done.write_text("garbage")  # the mark was lost or torn: everything is replayed, as retries
    reopened = Spool(tmp_path / "spool", max_runs=10)
    assert reopened.depth == 3
    assert reopened.replay(store) == 3 and reopened.depth == 0
    assert [r.run_id for r in store.list_runs(RunQuery(limit=10)).runs] == ["run-2", "run-1", "run-0"]


def test_runs_spooled_one_file_each_by_an_earlier_version_are_taken_in(store: SqlRunStore, tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir()
    for i in range(3):  # as the spool wrote them before the journal: sequence-digest.json
        digest = hashlib.sha256(f"run-{i}".encode()).hexdigest()[:24]
        (folder / f"{i + 1:012d}-{digest}.json").write_text(run_to_json(run(i)))
    (folder / ".tmp-000000000004-abc.json").write_text("{half")
    spool = Spool(folder, max_runs=2)  # a smaller limit than what waits: nothing is dropped
    assert spool.depth == 3 and not list(folder.glob("*.json")) and not list(folder.glob(".tmp-*"))
    assert spool.find("run-2") == run(2)
    assert spool.replay(store) == 3
    assert [r.run_id for r in store.list_runs(RunQuery(limit=10)).runs] == ["run-2", "run-1", "run-0"]


def test_a_drained_journal_starts_again_once_it_has_grown(
    store: SqlRunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 1_500)
    spool = Spool(tmp_path / "spool", max_runs=100)
    for i in range(10):
        spool.put(run(i))
    written = sorted((tmp_path / "spool").glob("*.journal"))
    assert len(written) > 2 and all(path.stat().st_size > 0 for path in written)
    assert spool.replay(store) == 10
    (fresh,) = (tmp_path / "spool").glob("*.journal")  # every segment taken: only a new, empty one is left
    assert fresh not in written and fresh.stat().st_size == 0
    spool.put(run(10))
    assert Spool(tmp_path / "spool", max_runs=100).find("run-10") == run(10)
    assert spool.replay(store) == 1 and store.get_run("run-10") == run(10)


def test_a_run_the_database_refuses_for_good_is_set_aside_and_never_blocks_the_rest(
    store: SqlRunStore, tmp_path: Path
) -> None:
    outage = Outage(store)
    spool = Spool(tmp_path / "spool", max_runs=10)
    writer = RunWriter(outage, spool)
    writer.save_run(run(1, run_id="taken"))
    writer.replay()
    outage.down = True
    writer.save_run(run(2, run_id="taken", model="other"))  # same id, another run: the database will refuse it
    writer.save_run(run(3))
    outage.down = False
    writer.save_run(run(4))
    writer.replay()
    assert writer.depth == 0
    assert [r.run_id for r in store.list_runs(RunQuery(limit=10)).runs] == ["run-4", "run-3", "taken"]
    (kept,) = spool.rejected()
    assert run_from_json(kept.read_text()) == run(2, run_id="taken", model="other")
    assert "already stored" in kept.with_name(kept.stem + ".reason.txt").read_text()


def test_every_run_set_aside_is_kept_even_when_the_journal_starts_over(store: SqlRunStore, tmp_path: Path) -> None:
    store.save_run(run(1, run_id="taken"))
    for model in ("other", "third"):
        spool = Spool(tmp_path / "spool", max_runs=10)
        spool.put(run(2, run_id="taken", model=model))
        assert spool.replay(store) == 0
        spool.close()
        for path in (tmp_path / "spool").glob("*.journal"):
            path.unlink()  # the next spool starts at the first segment's first byte again
    kept = sorted(run_from_json(path.read_text()).model_name for path in Spool(tmp_path / "spool", 10).rejected())
    assert kept == ["other", "third"]


def test_a_backlog_is_written_in_one_transaction_per_batch(store: SqlRunStore, tmp_path: Path) -> None:
    commits: list[int] = []
    sa.event.listen(store._engine, "commit", lambda connection: commits.append(1))
    writer = RunWriter(store, Spool(tmp_path / "spool", max_runs=200))
    for i in range(REPLAY_BATCH + 6):
        writer.save_run(run(i), fresh=True)
    commits.clear()
    assert writer.replay() == REPLAY_BATCH + 6
    assert len(commits) == 2  # a full batch, then the rest
    stored = store.list_runs(RunQuery(limit=200)).runs
    assert sorted(r.run_id for r in stored) == sorted(f"run-{i}" for i in range(REPLAY_BATCH + 6))
    assert all(store.get_run(r.run_id) == run(int(r.run_id.split("-")[1])) for r in stored[:5])


def test_a_journal_that_never_drains_still_sheds_what_was_taken(
    store: SqlRunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 1_500)
    outage = Outage(store)
    spool = Spool(tmp_path / "spool", max_runs=100)
    for i in range(12):
        spool.put(run(i))
    outage.down = True
    assert spool.replay(outage) == 0
    reopened = Spool(tmp_path / "spool", max_runs=100)  # a restart finds every segment's items, in order
    assert reopened.depth == 12 and len(list((tmp_path / "spool").glob("*.journal"))) > 2
    outage.down = False
    for i in range(12, 40):  # the writer always a few runs behind: the spool is never empty
        reopened.put(run(i))
        if i % 4 == 0:
            reopened.replay(outage)
            assert len(list((tmp_path / "spool").glob("*.journal"))) <= 3
    reopened.replay(outage)
    assert sorted(r.run_id for r in store.list_runs(RunQuery(limit=100)).runs) == sorted(f"run-{i}" for i in range(40))


@pytest.mark.parametrize("run_id", ["a/b", "../../escape", "x" * 120, "tab\there", "ünïcode-id"])
def test_client_chosen_ids_never_become_paths(store: SqlRunStore, tmp_path: Path, run_id: str) -> None:
    outage = Outage(store)
    writer = RunWriter(outage, Spool(tmp_path / "spool", max_runs=10))
    outage.down = True
    writer.save_run(run(1, run_id=run_id))
    names = [p.relative_to(tmp_path / "spool").as_posix() for p in (tmp_path / "spool").rglob("*")]
    assert names and all(re.fullmatch(r"\d{12}\.(journal|done)", name) for name in names)
    assert writer.get_run(run_id).run_id == run_id
    outage.down = False
    assert writer.replay() == 1 and store.get_run(run_id).run_id == run_id


def test_a_run_that_could_never_be_stored_is_refused_before_it_is_spooled(store: SqlRunStore, tmp_path: Path) -> None:
    outage = Outage(store)
    writer = RunWriter(outage, Spool(tmp_path / "spool", max_runs=10))
    outage.down = True
    with pytest.raises(InvalidInput, match="at most 128 characters"):
        writer.save_run(run(1, run_id="y" * 300))
    with pytest.raises(InvalidInput, match="NUL"):
        writer.save_run(run(1, run_id="nul\x00id"))
    assert writer.depth == 0
