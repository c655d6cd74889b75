"""Out of the box, inference runs outside the server's process: a `layerscope serve` with no settings puts each
model in a worker, so whatever kills the model's process costs that model's in-flight calls, never the server,
its health or the other models. Beyond `max_workers` processes the least recently used idle model is parked."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client, LayerscopeError
from tests.support import models
from tests.support.serve_process import serve_process

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid and b"layerscope.service.workers.main" in command:
                found.append(int(entry.name))
    return found


def model_of(pid: int) -> str:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return "a" if '"name": "a"' in command else "b"


def test_a_fresh_server_runs_models_in_workers_and_survives_one_being_killed_mid_call(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        models.small_cnn().save(tmp_path / "models" / name / "1" / "model.keras")
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    with serve_process(tmp_path, workers=True, start_timeout=300) as server:
        workers = {model_of(pid): pid for pid in children(server.pid)}
        assert set(workers) == {"a", "b"}, "each model's inference runs in a worker, not in the server"
        with Client(server.target, timeout=120) as client, ThreadPoolExecutor(4) as pool:
            expected = client.predict("b", x)
            calls = [pool.submit(client.capture, "a", x, full="*") for _ in range(6)]
            time.sleep(0.3)
            os.kill(workers["a"], signal.SIGKILL)
            failed = [c.exception() for c in calls if c.exception() is not None]
            assert all(isinstance(e, LayerscopeError) and "worker" in e.message for e in failed), failed
            assert client.health() == "SERVING"
            np.testing.assert_array_equal(client.predict("b", x)["probabilities"], expected["probabilities"])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # model a comes back with a new worker
                try:
                    client.predict("a", x)
                    break
                except LayerscopeError:
                    time.sleep(0.5)
            assert client.capture("a", x).summaries
        assert server.process.poll() is None, "the server outlived its model's worker"


def test_beyond_max_workers_the_least_recently_used_model_is_parked_and_answers_again(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        models.small_cnn().save(tmp_path / "models" / name / "1" / "model.keras")
    x = np.random.default_rng(1).random((4, 8, 8, 1)).astype("float32")
    with serve_process(tmp_path, {"LAYERSCOPE_MAX_WORKERS": "1"}, workers=True, start_timeout=300) as server:
        assert len(children(server.pid)) == 1, "two models loaded, one worker running"
        with Client(server.target, timeout=120) as client:
            first = {name: client.predict(name, x)["probabilities"] for name in ("a", "b", "a")}
            running = children(server.pid)
            assert len(running) == 1 and model_of(running[0]) == "a"
            np.testing.assert_array_equal(client.predict("b", x)["probabilities"], first["b"])
            assert [model_of(p) for p in children(server.pid)] == ["b"]
