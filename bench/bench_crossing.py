"""The worker crossing alone: a call through the real worker loop to an engine that does nothing, vs a bare
round trip of a few bytes between the same two kinds of process, side by side in one run.

    .venv/bin/python bench/bench_crossing.py [--rounds 300]

The server's end is `WorkerProcess` (as the pool drives it); the worker is `workers.main._serve`, the loop
every worker runs, over a stub engine whose `predict` returns a (batch, 10) float32 array at once, so what is
timed is packing, the wire, waking each side and unpacking. Inputs are (batch, 28, 28, 1) float32, the small
CNN's: batch 1 travels inside the pickle, batch 32 and 128 through the shared block. The floor is the same
socket pair carrying 64 bytes each way between two Python processes. Both regimes of bench_workers.py:
`busy` (back to back) and `spaced` (5 ms idle before each call: the vCPUs halt, both sides wake cold).
No TensorFlow is loaded on either side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerscope.service.workers.process import WorkerProcess
from layerscope.service.workers.protocol import ModelSpec, WorkerSpec
from layerscope.service.workers.transport import remove_blocks

MODEL = ("stub", 1)
PAUSES = {"busy": 0.0, "spaced": 0.005}


class _StubEngine:
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": np.zeros((next(iter(inputs.values())).shape[0], 10), np.float32)}


class _StubModels:
    """What `_serve` needs of a worker's models: engines by model version, and the memory limit."""

    def __init__(self) -> None:
        self.engines = {MODEL: _StubEngine()}
        self.memory_limit = None


def _worker(fd: int, prefix: str) -> None:
    from layerscope.service.workers.main import _serve
    from layerscope.service.workers.transport import Inbox, Outbox
    from layerscope.service.workers.wire import Wire

    _serve(Wire(socket.socket(fileno=fd), Outbox(prefix), Inbox()), _StubModels())


def _echo(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    while data := sock.recv(65536):
        sock.sendall(data)


def _child(mode: str, prefix: str) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    with theirs:
        command = [sys.executable, __file__, f"--{mode}", str(theirs.fileno()), prefix]
        popen = subprocess.Popen(command, pass_fds=(theirs.fileno(),))
    return popen, ours


def measure(rounds: int) -> list[dict[str, Any]]:
    prefix = f"lsbench-crossing-{os.getpid()}"
    worker_popen, worker_socket = _child("worker", prefix)
    echo_popen, echo_socket = _child("echo", prefix)
    spec = WorkerSpec((ModelSpec("-", *MODEL),), prefix)
    worker = WorkerProcess(spec, worker_popen, worker_socket)
    ping = bytes(64)

    def bare() -> None:
        echo_socket.sendall(ping)
        echo_socket.recv(64)

    rows = []
    try:
        for batch in (1, 32, 128):
            x = {"x": np.random.default_rng(0).normal(size=(batch, 28, 28, 1)).astype("float32")}
            cases: dict[str, Callable[[], Any]] = {
                "call": lambda x=x: worker.call(MODEL, "predict", (x,), {}, 30.0),
                "bare": bare,
            }
            for fn in cases.values():
                for _ in range(100):
                    fn()
            for regime, pause in PAUSES.items():
                seconds: dict[str, list[float]] = {k: [] for k in cases}
                for _ in range(rounds):  # interleaved, so drift hits both alike
                    for key, fn in cases.items():
                        for _ in range(1 if pause else 4):
                            time.sleep(pause)
                            started = time.perf_counter()
                            fn()
                            seconds[key].append(time.perf_counter() - started)
                call, floor = (statistics.median(seconds[k]) * 1e6 for k in ("call", "bare"))
                row = {"batch": batch, "regime": regime, "call_us": round(call), "bare_us": round(floor)}
                rows.append({**row, "added_us": round(call - floor)})
    finally:
        worker.kill()
        worker.wait()
        echo_socket.close()
        echo_popen.wait()
        remove_blocks(prefix)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("prefix", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return _worker(args.worker, args.prefix)
    if args.echo is not None:
        return _echo(args.echo)
    rows = measure(args.rounds)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rows": rows}))
    print(f"\n{'batch':>5} {'regime':6} {'call us':>8} {'bare us':>8} {'added us':>9}")
    for r in rows:
        print(f"{r['batch']:>5} {r['regime']:6} {r['call_us']:>8} {r['bare_us']:>8} {r['added_us']:>9}")


if __name__ == "__main__":
    main()
