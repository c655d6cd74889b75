"""Out of the box, inference runs outside the server's process: a `layerscope serve` with no settings puts its
small models in shared workers (`models_per_worker`, 4), so whatever kills a worker costs the in-flight calls
of its models and a restart, never the server or its health, and the model whose call killed it moves to a
worker of its own. With a process per model (`models_per_worker=1`) the other models do not even notice.
Beyond `max_workers` processes the least recently used idle worker is parked."""

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


def settled(pid: int) -> list[int]:
    """The server's workers once a parked one has exited (SIGTERM takes a moment on a loaded machine)."""
    deadline = time.monotonic() + 30
    while len(running := children(pid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def model_of(pid: int) -> str:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return "a" if '"name": "a"' in command else "b"


def two_models(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        models.small_cnn().save(tmp_path / "models" / name / "1" / "model.keras")


def answer_within(client: Client, name: str, x: np.ndarray, seconds: float) -> dict[str, np.ndarray]:
    deadline = time.monotonic() + seconds
    while True:  # a model whose worker is restarting answers UNAVAILABLE ("retry in a few seconds") meanwhile
        try:
            return client.predict(name, x)
        except LayerscopeError as error:
            assert "worker" in error.message, error.message
            assert time.monotonic() < deadline, f"{name} did not answer again within {seconds} s"
            time.sleep(0.5)


def test_a_fresh_server_shares_a_worker_and_moves_the_model_that_crashed_it_to_its_own(tmp_path: Path) -> None:
    two_models(tmp_path)
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    with serve_process(tmp_path, workers=True, start_timeout=300) as server:
        [shared] = children(server.pid)
        many = np.random.default_rng(1).random((512, 8, 8, 1)).astype("float32")
        with Client(server.target, timeout=120) as client, ThreadPoolExecutor(4) as pool:
            expected = client.predict("b", x)
            calls = [pool.submit(client.capture, "a", many, full="*") for _ in range(40)]
            calls[0].result()
            os.kill(shared, signal.SIGKILL)  # while a's captures run in it
            failed = [c.exception() for c in calls if c.exception() is not None]
            assert failed and all(isinstance(e, LayerscopeError) and "worker" in e.message for e in failed), failed
            assert client.health() == "SERVING"
            again = answer_within(client, "b", x, 120)  # b comes back in the restarted shared worker
            np.testing.assert_array_equal(again["probabilities"], expected["probabilities"])
            answer_within(client, "a", x, 120)  # a starts in a worker of its own
            assert client.capture("a", x).summaries
            workers = children(server.pid)
            assert len(workers) == 2 and shared not in workers, "a left the shared worker, b restarted in it"
            assert sorted(model_of(pid) for pid in workers) == ["a", "b"], "one worker holds b alone, one a"
        assert server.process.poll() is None, "the server outlived its models' worker"


def test_with_a_process_per_model_a_killed_worker_costs_only_its_model(tmp_path: Path) -> None:
    two_models(tmp_path)
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    dedicated = {"LAYERSCOPE_MODELS_PER_WORKER": "1"}
    with serve_process(tmp_path, dedicated, workers=True, start_timeout=300) as server:
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
    two_models(tmp_path)
    x = np.random.default_rng(1).random((4, 8, 8, 1)).astype("float32")
    one = {"LAYERSCOPE_MAX_WORKERS": "1", "LAYERSCOPE_MODELS_PER_WORKER": "1"}
    with serve_process(tmp_path, one, workers=True, start_timeout=300) as server:
        assert len(children(server.pid)) == 1, "two models loaded, one worker running"
        with Client(server.target, timeout=120) as client:
            first = {name: client.predict(name, x)["probabilities"] for name in ("a", "b", "a")}
            assert [model_of(p) for p in settled(server.pid)] == ["a"]
            np.testing.assert_array_equal(client.predict("b", x)["probabilities"], first["b"])
            assert [model_of(p) for p in settled(server.pid)] == ["b"]
