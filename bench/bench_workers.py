"""Model workers vs in-process engines, side by side in one run: Predict, all-layer summary capture, and a
Diagnose with targets (gradients and the default training probe).

    .venv/bin/python bench/bench_workers.py [--quick] [--json out.json]

For the bench models of bench_capture.py (a small CNN and a 12-Conv2D 64x64 CNN), at batch 1, 32 and 128,
times (median of interleaved repeats) the same archive's engine in this process (`CaptureEngine`, fused
statistics kernel loaded as the server loads it) and through a model worker (`ModelWorker`: arguments and
results cross a socket pair and shared memory). Both answer the same calls with the same arrays; the
ratio is worker over in-process, "added ms" their difference, and "crossing ms" the median time a call
spent outside the worker's engine (what the layerscope_worker_crossing_seconds histogram records).
Not through gRPC: what is measured is the process boundary alone. Each row is measured twice: back to back
(`busy`) and with a pause before each call (`spaced`); see REGIMES.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerscope.service.runtime.quiet_start import start_tensorflow

start_tensorflow()

import keras  # noqa: E402 - after the quiet start
import numpy as np  # noqa: E402

from bench.bench_capture import deep_cnn, small_cnn  # noqa: E402
from layerscope.service.diagnosis.diagnoser import Diagnoser  # noqa: E402
from layerscope.service.domain.capture import CaptureRequest  # noqa: E402
from layerscope.service.domain.selection import Selection  # noqa: E402
from layerscope.service.domain.training import TrainingOptions  # noqa: E402
from layerscope.service.model_diagnosis import diagnose  # noqa: E402
from layerscope.service.models.registry import LoadedModel, open_model  # noqa: E402
from layerscope.service.runtime.native import SummaryOpLoader  # noqa: E402
from layerscope.service.settings import Settings  # noqa: E402
from layerscope.service.workers.pool import WorkerPool  # noqa: E402

SUMMARIES = Selection(layers=("*",), kinds=frozenset({"activation"}))
DIAGNOSER = Diagnoser()


class Crossings:
    """A WorkerObserver that keeps each call's crossing time."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def restarted(self, model: str, cause: str) -> None:
        raise RuntimeError(f"the worker of {model} died during the benchmark: {cause}")

    def resident(self, model: str, version: int, size: int | None) -> None:
        pass

    def crossed(self, model: str, seconds: float) -> None:
        self.seconds.append(seconds)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


REGIMES = {"busy": (8, 0.0), "spaced": (1, 0.005)}
"""Regime -> (calls of one case in a row, pause before each timed call in seconds).

TensorFlow's threads run a call about twice as fast right after another call as after a pause of a few
milliseconds (the small CNN's Predict: 1.3 ms back to back, 2.6 ms after 3 ms idle, on this VM). So the
comparison depends on the load. `busy`: runs of 8 calls per case, back to back, as a loaded server sees them
(in-process calls run hot; each worker call follows its crossing). `spaced`: every call after a 5 ms pause,
as a lightly loaded server sees them (both cool); what is left between the two is the crossing itself."""


def measure(
    local: LoadedModel, worker: LoadedModel, crossings: Crossings, batch: int, rounds: int, regime: str
) -> dict[str, Any]:
    run_length, pause = REGIMES[regime]
    spec = local.engine.inputs[0]
    shape = (batch, *(d or 1 for d in spec.shape[1:]))
    x = {spec.name: np.random.default_rng(0).normal(size=shape).astype("float32")}
    output = local.engine.output_names[0]
    y = {output: np.random.default_rng(1).integers(0, local.engine.output_specs[0].shape[-1], shape[0])}
    training = TrainingOptions(targets=y, loss="sparse_categorical_crossentropy")  # the default probe steps
    cases: dict[str, Callable[[], Any]] = {
        "predict_in_process": lambda: local.engine.predict(x),
        "predict_worker": lambda: worker.engine.predict(x),
        "capture_in_process": lambda: local.engine.run(CaptureRequest(x, SUMMARIES)),
        "capture_worker": lambda: worker.engine.run(CaptureRequest(x, SUMMARIES)),
        "diagnose_in_process": lambda: diagnose(local, DIAGNOSER, x, training),
        "diagnose_worker": lambda: diagnose(worker, DIAGNOSER, x, training),
    }
    for fn in cases.values():  # warm up: trace and compile everything on both sides first
        fn()
        fn()
    repeats = max(3, rounds // max(1, batch // 8))
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    crossed: dict[str, list[float]] = {"predict": [], "capture": [], "diagnose": []}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits every case alike
        for key, fn in cases.items():
            # A Diagnose takes tens to thousands of milliseconds: once per round is enough samples.
            for _ in range(1 if key.startswith("diagnose") else run_length):
                time.sleep(pause)
                seconds[key].append(timed(fn))
                if key.endswith("_worker"):
                    crossed[key.split("_")[0]].append(crossings.seconds[-1])
    ms = {k: statistics.median(v) * 1000 for k, v in seconds.items()}
    row: dict[str, Any] = {"model": local.info.name, "batch": batch, "regime": regime, "repeats": repeats}
    for op in ("predict", "capture", "diagnose"):
        inside, through = ms[f"{op}_in_process"], ms[f"{op}_worker"]
        row[op] = {
            "in_process_ms": round(inside, 3),
            "worker_ms": round(through, 3),
            "ratio": round(through / inside, 3),
            "added_ms": round(through - inside, 3),
            "crossing_ms": round(statistics.median(crossed[op]) * 1000, 3),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="batch 32 only, fewer repeats")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    batches = (32,) if args.quick else (1, 32, 128)
    rounds = 8 if args.quick else 40
    summary_op = SummaryOpLoader()
    summary_op.load()
    crossings = Crossings()
    pool = WorkerPool(Settings(model_workers=True), crossings)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for build in (small_cnn, deep_cnn):
            keras.utils.set_random_seed(0)
            model = build()
            path = Path(folder) / f"{model.name}.keras"
            model.save(path)
            local = open_model(path, model.name, 1, summary_op=summary_op)
            worker = pool.open(path, model.name, 1)
            try:
                rows += [measure(local, worker, crossings, b, rounds, r) for b in batches for r in REGIMES]
            finally:
                pool.close_all()  # waits until the worker is gone and its memory removed
    doc = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rows": rows}
    print(json.dumps(doc, indent=1))
    header = ("in-proc ms", "worker ms", "ratio", "added ms", "crossing")
    print(f"\n{'model':10} {'batch':>5} {'regime':6} {'op':8} " + " ".join(f"{h:>10}" for h in header))
    for r in rows:
        for op in ("predict", "capture", "diagnose"):
            c = r[op]
            print(
                f"{r['model']:10} {r['batch']:>5} {r['regime']:6} {op:8} {c['in_process_ms']:>10.3f} "
                f"{c['worker_ms']:>10.3f} "
                f"{c['ratio']:>9.2f}x {c['added_ms']:>10.3f} {c['crossing_ms']:>10.3f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
