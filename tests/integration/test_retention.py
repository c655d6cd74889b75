"""With a retention setting, the server prunes runs older than it, and keeps the rest."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from layerscope.service.domain.runs import RunQuery, RunRecord
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.sql_store import SqlRunStore
from tests.conftest import start_server


def old_run(run_id: str, age_days: float) -> RunRecord:
    return RunRecord(
        run_id, "m", 1, "0" * 64, "capture", datetime.now(UTC) - timedelta(days=age_days), 1, "", "CPU", 0.1
    )


def test_runs_past_the_retention_period_are_pruned_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    engine = create_engine(url)
    migrate(engine)
    store = SqlRunStore(engine)
    store.save_run(old_run("ancient", 40))
    store.save_run(old_run("recent", 2))
    server = start_server(tmp_path, database_url=url, retention_days=30, spool_replay_seconds=0.2)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ids = {r.run_id for r in store.list_runs(RunQuery()).runs}
            if ids == {"recent"}:
                break
            time.sleep(0.2)
    finally:
        server.stop()
        engine.dispose()
    assert ids == {"recent"}
