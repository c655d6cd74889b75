"""Capture overhead, side by side in one run: plain compiled forward pass vs summary capture vs full capture.

    .venv/bin/python bench/bench_capture.py [--quick] [--json out.json]

For a small CNN and a deeper 64x64 CNN (12 Conv2D), at batch 1, 32 and 128, times (median of interleaved
repeats) the plain compiled forward pass, summary capture of all layers, full capture of all layers kept on
the device, and a keract-style baseline (a multi-output model of every layer through `Model.predict`).
Ratios are against the forward pass measured in the same run on the same machine.
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
import tensorflow as tf

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.capture.selection import Selection


def small_cnn() -> keras.Model:
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(image)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(image, keras.layers.Dense(10, activation="softmax")(x), name="small_cnn")


def deep_cnn() -> keras.Model:
    image = keras.Input((64, 64, 3), name="image")
    x = image
    for block, filters in enumerate((16, 32, 64, 128)):
        for _ in range(3):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        if block < 3:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(10, activation="softmax")(x), name="deep_cnn")


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sync(result: Any) -> None:
    """Wait for the device without copying the tensors to the host."""
    for t in tf.nest.flatten(result):
        if isinstance(t, tf.Tensor):
            t.shape  # noqa: B018
    tf.nest.map_structure(lambda t: t, result)
    if tf.config.list_logical_devices("GPU"):
        tf.test.experimental.sync_devices()


def measure(model: keras.Model, batch: int, rounds: int) -> dict[str, Any]:
    engine = CaptureEngine(model)
    name = engine.inputs[0].name
    x = {name: np.random.default_rng(0).normal(size=(batch, *model.input_shape[1:])).astype("float32")}
    summaries = Selection(layers=("*",), kinds=frozenset({"activation"}))
    full = Selection(layers=("*",), kinds=frozenset({"activation"}), full=("*",))
    baseline = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    arrays = engine.prepare(x)
    forward_fn = engine._predictor(arrays)

    cases: dict[str, Callable[[], Any]] = {
        "forward": lambda: sync(forward_fn(arrays)),
        "summaries": lambda: sync(engine.run_on_device(x, summaries)[2]),
        "full_on_device": lambda: sync(engine.run_on_device(x, full)[2]),
        "summaries_to_host": lambda: engine.capture(x, summaries),
        "keract_style": lambda: baseline.predict(arrays[0], batch_size=batch, verbose=0),
    }
    for fn in cases.values():  # warm up: trace and compile everything first
        fn()
        fn()
    repeats = max(3, rounds // max(1, batch // 8))
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(5):  # interleave so drift on a shared machine hits every case alike
        for key, fn in cases.items():
            seconds[key].append(median_seconds(fn, repeats))
    best = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "model": model.name,
        "batch": batch,
        "ms": {k: round(v * 1000, 3) for k, v in best.items()},
        "ratio_vs_forward": {k: round(v / best["forward"], 3) for k, v in best.items()},
        "speedup_vs_keract": round(best["keract_style"] / best["summaries"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="batch 32 only, fewer repeats")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    batches = (32,) if args.quick else (1, 32, 128)
    rounds = 5 if args.quick else 20
    keras.utils.set_random_seed(0)
    rows = [measure(build(), b, rounds) for build in (small_cnn, deep_cnn) for b in batches]
    devices = [d.name for d in tf.config.list_logical_devices()]
    doc = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "devices": devices,
        "rows": rows,
    }
    print(json.dumps(doc, indent=1))
    print(f"\n{'model':10} {'batch':>5} {'forward ms':>11} {'summ x':>7} {'full x':>7} {'host x':>7} {'keract x':>9}")
    for r in rows:
        q = r["ratio_vs_forward"]
        print(
            f"{r['model']:10} {r['batch']:>5} {r['ms']['forward']:>11.3f} {q['summaries']:>7.2f} "
            f"{q['full_on_device']:>7.2f} {q['summaries_to_host']:>7.2f} {q['keract_style']:>9.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
