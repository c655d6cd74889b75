"""Runs are written behind the response: a server killed right after answering loses none of the runs it
answered for, and the next start stores each exactly once."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client
from layerscope.service.store.spool import Spool
from tests.support import models
from tests.support.serve_process import serve_process

pytestmark = pytest.mark.slow


def waiting_in(spool: Path) -> int:
    """How many runs the spool left by a server holds, as the next server will find them."""
    found = Spool(spool, max_runs=1000)
    found.close()
    return found.depth


def stored_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT run_id FROM run")]


def test_runs_answered_before_a_kill_are_stored_exactly_once_after_the_restart(tmp_path: Path) -> None:
    (tmp_path / "models" / "m" / "1").mkdir(parents=True)
    models.small_cnn().save(tmp_path / "models" / "m" / "1" / "model.keras")
    env = {"LAYERSCOPE_SPOOL_DIR": str(tmp_path / "spool"), "LAYERSCOPE_ISOLATED_LOADING": "false",
           "LAYERSCOPE_MONITOR_SAMPLE_RATE": "0"}  # fmt: skip
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    with serve_process(tmp_path, env) as server:
        with Client(server.target, timeout=60) as client:
            first = client.capture("m", x).run_id
            assert [r.run_id for r in client.runs("m")] == [first]  # the writer keeps up
            # Hold the database's write lock, as a long transaction of another process would: the writer waits
            # on it, while captures still answer (their runs are on disk in the spool).
            blocker = sqlite3.connect(server.database, timeout=0, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            answered = [client.capture("m", x).run_id for _ in range(5)]
            answered.append(client.capture("m", x, run_id="caller-chosen").run_id)
        server.process.send_signal(signal.SIGKILL)  # right after answering: nothing more is written
        server.process.wait(30)
        blocker.execute("ROLLBACK")
        blocker.close()
    assert stored_ids(server.database) == [first], "the kill came before the writer could store them"
    assert waiting_in(tmp_path / "spool") == len(answered)

    with serve_process(tmp_path, env) as again:
        deadline = time.monotonic() + 30
        while len(stored_ids(again.database)) < 1 + len(answered) and time.monotonic() < deadline:
            time.sleep(0.2)
        with Client(again.target) as client:
            assert client.get_run("caller-chosen").run_id == "caller-chosen"
    stored = stored_ids(again.database)
    assert sorted(stored) == sorted([first, *answered]) and len(stored) == len(set(stored))
    assert waiting_in(tmp_path / "spool") == 0
