"""The training probe's cost as a multiple of one training step, for the bench models of bench_capture.py.

    .venv/bin/python bench/bench_probe.py [--batch 32] [--json out.json]

For the small CNN and the 12-Conv2D 64x64 CNN: one training step (`Model.train_on_batch` after warm-up, the
step a user's `fit` pays); a whole probe of 5 and of 10 steps (`CaptureEngine.probe`: clone, trace, steps,
measurements, as a Diagnose with targets runs it); the per-step cost (10-step minus 5-step probe, over 5);
the fixed cost (the 5-step probe minus 5 per-step costs); the first probe of a freshly loaded model (which
also clones it and traces the step: later probes reuse both); and a gradient capture (summaries of every
kernel's gradient, compiled once and cached like any capture). Medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from bench.bench_capture import deep_cnn, small_cnn
from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.domain.selection import Selection

GRADIENTS = Selection(kinds=frozenset({"kernel_gradient"}))


def seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(model: keras.Model, batch: int, rounds: int) -> dict[str, Any]:
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    engine = CaptureEngine(model, compile_config=model.get_compile_config())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, *model.input_shape[1:])).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch)]
    inputs, targets = {engine.inputs[0].name: x}, {"y": y}
    train = keras.models.clone_model(model)  # the user's own training: another copy, its own optimizer
    train.compile(optimizer="adam", loss="categorical_crossentropy")
    cases: dict[str, Callable[[], Any]] = {
        "train_step": lambda: train.train_on_batch(x, y),
        "probe_5": lambda: engine.probe(inputs, targets, 5),
        "probe_10": lambda: engine.probe(inputs, targets, 10),
        "gradient_capture": lambda: engine.capture(inputs, GRADIENTS, targets=targets),
    }
    # The first probe of a loaded model also clones it and traces its step (later probes reuse both).
    first = statistics.median(
        seconds(lambda: CaptureEngine(model, compile_config=model.get_compile_config()).probe(inputs, targets, 5))
        for _ in range(3)
    )
    for fn in cases.values():  # warm up: Keras's train function and the capture are traced once
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for key, fn in cases.items():
            repeats = 10 if key in ("train_step", "gradient_capture") else 1
            times[key].append(statistics.median(seconds(fn) for _ in range(repeats)))
    best = {k: statistics.median(v) for k, v in times.items()}
    per_step = max(best["probe_10"] - best["probe_5"], 0.0) / 5
    fixed = best["probe_5"] - 5 * per_step
    step = best["train_step"]
    best["first_probe_5"] = first
    return {
        "model": model.name,
        "batch": batch,
        "ms": {k: round(v * 1000, 2) for k, v in best.items()},
        "probe_step_ms": round(per_step * 1000, 2),
        "probe_fixed_ms": round(fixed * 1000, 1),
        "x_train_step": {
            "first_probe_5": round(first / step, 1),
            "probe_5": round(best["probe_5"] / step, 1),
            "probe_10": round(best["probe_10"] / step, 1),
            "probe_step": round(per_step / step, 2),
            "gradient_capture": round(best["gradient_capture"] / step, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = [measure(build(), args.batch, args.rounds) for build in (small_cnn, deep_cnn)]
    doc = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "rows": rows}
    print(json.dumps(doc, indent=1))
    print(f"\n{'model':10} {'batch':>5} {'step ms':>8} {'probe5 ms':>10} {'x step':>7} {'per-step x':>10} "
          f"{'fixed ms':>9} {'grad cap x':>10} {'1st probe5 x':>12}")  # fmt: skip
    for r in rows:
        q = r["x_train_step"]
        print(
            f"{r['model']:10} {r['batch']:>5} {r['ms']['train_step']:>8.2f} {r['ms']['probe_5']:>10.1f} "
            f"{q['probe_5']:>7.1f} {q['probe_step']:>10.2f} {r['probe_fixed_ms']:>9.1f} {q['gradient_capture']:>10.2f}"
            f" {q['first_probe_5']:>12.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
