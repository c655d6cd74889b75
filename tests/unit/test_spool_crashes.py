"""The spool under any order of appends, outages, crashes and restarts: every run it accepted reaches the
database exactly once, and nothing it did not accept does.

Hypothesis draws the sequence. A crash is the process vanishing: its `Spool` is abandoned unclosed, and it
may have died in the middle of an append (a line cut short at the end of the journal, which it never
acknowledged). Segments are made small so that appends cross them and drained ones are removed.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.service.domain.runs import RunQuery
from layerscope.service.store import spool as spool_module
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.spool import Spool
from layerscope.service.store.sql_store import SqlRunStore
from tests.unit.test_spool import Outage, run

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 6)),
        st.tuples(st.just("replay"), st.booleans()),  # whether the database is up
        st.tuples(st.just("crash"), st.booleans()),  # whether the process died in the middle of an append
    ),
    max_size=12,
)


def stored(store: SqlRunStore) -> list[str]:
    return [r.run_id for r in store.list_runs(RunQuery(limit=200)).runs]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_every_accepted_run_is_stored_exactly_once_whatever_happens(
    steps: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 2_000)
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{folder}/runs.db")
        migrate(engine)
        outage = Outage(SqlRunStore(engine))
        spool, accepted = Spool(Path(folder) / "spool", max_runs=500), []
        for action, value in steps:
            if action == "put":
                for _ in range(int(value)):  # type: ignore[call-overload]
                    spool.put(run(len(accepted)), sync=False)
                    accepted.append(f"run-{len(accepted)}")
            elif action == "replay":
                outage.down = not value
                spool.replay(outage)
            else:
                if value:
                    (*_, journal) = sorted((Path(folder) / "spool").glob("*.journal"))
                    with journal.open("ab") as f:
                        f.write(b'0f0f0f0f0f0f0f0f0f0f0f0f {"run_id": "never-acknowledged", "mod')
                spool = Spool(Path(folder) / "spool", max_runs=500)  # the next process
        outage.down = False
        spool.replay(outage)
        assert spool.depth == 0
        assert sorted(stored(outage.store)) == sorted(accepted)
        assert Spool(Path(folder) / "spool", max_runs=500).depth == 0  # and a restart finds nothing left
        engine.dispose()


def test_runs_appended_while_the_writer_replays_are_each_stored_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    migrate(engine)
    store = SqlRunStore(engine)
    spool = Spool(tmp_path / "spool", max_runs=1000)
    done = threading.Event()

    def writer() -> None:
        while not done.is_set():
            spool.replay(store)

    def producer(first: int) -> None:
        for i in range(first, first + 60):
            spool.put(run(i), sync=False)

    thread = threading.Thread(target=writer)
    thread.start()
    producers = [threading.Thread(target=producer, args=(k * 60,)) for k in range(3)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    thread.join()
    spool.replay(store)
    assert sorted(stored(store)) == sorted(f"run-{i}" for i in range(180)) and spool.depth == 0
