"""What a new user waits for, through `layerscope serve` as a user runs it: start-up, an upload, a worker's restart.

    .venv/bin/python bench/bench_first_hour.py [--rounds 2] [--json out.json]   # three to five minutes

- start-up: from the command's start until every model is loaded (health's `layerscope.models` SERVING; the
  server says SERVING before that, as soon as it answers: bench_startup.py), with an empty repository and with
  three example models (healthy_cnn, dead_relu, dense_on_image);
- upload: examples/models/healthy_cnn.keras (35 KB) with the trial load in a child process
  (LAYERSCOPE_ISOLATED_LOADING=true, the default: the child imports TensorFlow) and without it;
- worker restart: with LAYERSCOPE_MODEL_WORKERS=true, SIGKILL the model's worker, then time the next Predict
  from the kill to its answer (the client waits through the restart: a fresh interpreter imports TensorFlow and
  loads the model), and the Predict that was in flight when the worker died.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from layerscope.client import Client, LayerscopeError  # noqa: E402
from tests.support.serve_process import serve_process  # noqa: E402

EXAMPLES = ROOT / "examples" / "models"
THREE = ("healthy_cnn", "dead_relu", "dense_on_image")


def put(repository: Path, name: str) -> None:
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes((EXAMPLES / f"{name}.keras").read_bytes())


def start_up(models: tuple[str, ...]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            put(Path(tmp) / "models", name)
        started = time.perf_counter()
        with serve_process(Path(tmp), start_timeout=600) as server, Client(server.target) as c:
            seconds = time.perf_counter() - started
            assert sorted(m.name for m in c.list_models()) == sorted(models)
    return seconds


def uploads(isolated: bool, rounds: int) -> list[float]:
    env = {"LAYERSCOPE_ISOLATED_LOADING": str(isolated).lower()}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_process(Path(tmp), env, 600) as server,
        Client(server.target, timeout=600) as c,
    ):
        times = []
        for i in range(rounds):
            started = time.perf_counter()
            c.upload_model(f"digits{i}", EXAMPLES / "healthy_cnn.keras")
            times.append(time.perf_counter() - started)
    return times


def worker_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and "layerscope.service.workers.main" in command:
                found.append(int(entry.name))
    return found


def restarts(rounds: int) -> dict[str, Any]:
    env = {"LAYERSCOPE_MODEL_WORKERS": "true", "LAYERSCOPE_WORKER_MAX_CRASHES": str(rounds + 4)}
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype="float32")
    out: dict[str, Any] = {"next_call": [], "in_flight": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_process(Path(tmp), env, 600) as server,
        Client(server.target, timeout=600) as c,
    ):
        c.upload_model("digits", EXAMPLES / "healthy_cnn.keras")
        c.predict("digits", x)
        for _ in range(rounds):
            (pid,) = worker_pids(server.pid)
            os.kill(pid, signal.SIGKILL)
            killed = time.perf_counter()
            c.predict("digits", x)
            out["next_call"].append(time.perf_counter() - killed)
        # Calls in flight when their worker dies: answered UNAVAILABLE, retried by the client, which then waits
        # for the restart; with a timeout shorter than the restart, DEADLINE_EXCEEDED naming the death.
        for timeout in (5.0, 600.0):
            out["in_flight"].append(in_flight(server.target, server.pid, x, timeout))
    return out


def in_flight(target: str, server: int, x: np.ndarray, timeout: float) -> dict[str, Any]:
    """Predicts back to back in a thread; the worker is killed after a second. The first call to end after the
    kill (in flight then, as a rule: the calls follow each other without a gap): what it answered, and when."""
    result: dict[str, Any] = {"timeout": timeout}
    killed = threading.Event()
    killed_at = [0.0]

    def calls() -> None:
        with Client(target, timeout=timeout) as c:
            while True:
                started = time.perf_counter()
                try:
                    c.predict("digits", x)
                    answer = "answered"
                except LayerscopeError as exc:
                    answer = f"{type(exc).__name__}: {exc.message}"
                if killed.is_set():
                    ended = time.perf_counter()
                    result.update(answer=answer, seconds=ended - started, in_flight=started < killed_at[0])
                    return

    thread = threading.Thread(target=calls)
    thread.start()
    time.sleep(1.0)
    (pid,) = worker_pids(server)
    killed_at[0] = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    killed.set()
    thread.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    figures["load_average_before"] = os.getloadavg()
    figures["start_empty"] = [start_up(()) for _ in range(args.rounds)]
    figures["start_three"] = [start_up(THREE) for _ in range(args.rounds)]
    figures["upload_isolated"] = uploads(True, args.rounds)
    figures["upload_in_process"] = uploads(False, args.rounds)
    figures["worker_restart"] = restarts(args.rounds)
    figures["load_average_after"] = os.getloadavg()
    for key in ("start_empty", "start_three", "upload_isolated", "upload_in_process"):
        each = ", ".join(f"{s:.1f}" for s in figures[key])
        print(f"{key:>20}: median {statistics.median(figures[key]):6.1f} s  ({each})")
    restart = figures["worker_restart"]
    print(f"{'worker restart':>20}: next call {', '.join(f'{s:.1f}' for s in restart['next_call'])} s after the kill")
    for call in restart["in_flight"]:
        answer = f"{call['answer']} after {call['seconds']:.1f} s (in flight at the kill: {call['in_flight']})"
        print(f"{'in-flight predict':>20}: timeout {call['timeout']:g} s: {answer}")
    print(f"load average before {figures['load_average_before']}, after {figures['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
