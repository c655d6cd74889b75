"""Capture overhead, side by side in one run: plain compiled forward pass vs summary capture vs full capture.

    .venv/bin/python bench/bench_capture.py [--quick] [--json out.json]

For a small CNN and a deeper 64x64 CNN (12 Conv2D), at batch 1, 32 and 128, times (median of interleaved
repeats) the plain compiled forward pass; summary capture of all layers (the default, sampled histogram);
the same with exact statistics; every activation kept on the device in full with no summaries
(statistics="none"); summaries copied to the host; and a keract-style baseline (a multi-output model of
every layer through `Model.predict`, then the same statistics in NumPy, as a keract user would compute them;
`keract_predict` is the extraction alone). Ratios are against the forward pass measured in the same run.

The floor: this machine's memory bandwidth (a large float32 array summed with TensorFlow's threads, as the
forward pass uses them) and the bytes of activations the selection produces give the bound
`1 + bytes / bandwidth / forward` of a statistics pass that reads every activation once from memory. Each
summary ratio is printed beside it, and as a multiple of it.
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

from layerscope.service.capture.engine import CaptureEngine, _call
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import summarize


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


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median wall time of one call, and the process CPU time per call (every thread's, summed)."""
    times = []
    cpu_started = time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), (time.process_time() - cpu_started) / repeats


def paired_ratio(samples: dict[str, list[float]], key: str) -> float:
    """Median over rounds of the case's time over the forward pass's time in the same round.

    Pairing each case with the forward pass measured next to it cancels the drift of a shared machine
    better than dividing two medians taken over the whole run.
    """
    return statistics.median(c / f for c, f in zip(samples[key], samples["forward"], strict=True))


def sync(result: Any) -> None:
    """Wait for the device without copying the tensors to the host."""
    for t in tf.nest.flatten(result):
        if isinstance(t, tf.Tensor):
            t.shape  # noqa: B018
    tf.nest.map_structure(lambda t: t, result)
    if tf.config.list_logical_devices("GPU"):
        tf.test.experimental.sync_devices()


def bandwidth_bytes_per_second(megabytes: int = 256) -> float:
    """Best of a few sums of a large float32 array (threads as TensorFlow's intra-op pool uses them)."""
    values = tf.constant(np.ones(megabytes * 2**20 // 4, "float32"))
    reduce = tf.function(tf.reduce_sum)
    reduce(values).numpy()
    best = min(_seconds(lambda: reduce(values).numpy()) for _ in range(7))
    return megabytes * 2**20 / best


def _seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def activation_bytes(engine: CaptureEngine, x: dict[str, np.ndarray], selection: Selection) -> int:
    full = Selection(layers=selection.layers, kinds=selection.kinds, full=("*",))
    tensors = engine.capture(x, full, statistics="none").tensors
    return sum(a.nbytes for kinds in tensors.values() for a in kinds.values())


def measure(model: keras.Model, batch: int, rounds: int, bandwidth: float) -> dict[str, Any]:
    engine = CaptureEngine(model)
    name = engine.inputs[0].name
    x = {name: np.random.default_rng(0).normal(size=(batch, *model.input_shape[1:])).astype("float32")}
    summaries = Selection(layers=("*",), kinds=frozenset({"activation"}))
    full = Selection(layers=("*",), kinds=frozenset({"activation"}), full=("*",))
    baseline = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    arrays = engine.prepare(x)
    forward_fn = engine._predictor(arrays)

    cases: dict[str, Callable[[], Any]] = {
        "forward": lambda: sync(_call(forward_fn, arrays)),  # as the engine calls it: on flat tensors
        "summaries": lambda: sync(engine.run_on_device(x, summaries)[2]),
        "exact": lambda: sync(engine.run_on_device(x, summaries, "exact")[2]),
        "full_on_device": lambda: sync(engine.run_on_device(x, full, "none")[2]),
        "summaries_to_host": lambda: engine.capture(x, summaries),
        "keract_predict": lambda: baseline.predict(arrays[0], batch_size=batch, verbose=0),
        "keract_style": lambda: [summarize(a) for a in baseline.predict(arrays[0], batch_size=batch, verbose=0)],
    }
    for fn in cases.values():  # warm up: trace and compile everything first
        fn()
        fn()
    repeats = max(3, rounds // max(1, batch // 8))
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(7):  # interleave so drift on a shared machine hits every case alike
        for key, fn in cases.items():
            wall, busy = median_seconds(fn, repeats)
            seconds[key].append(wall)
            cpu[key].append(busy)
    best = {k: statistics.median(v) for k, v in seconds.items()}
    size = activation_bytes(engine, x, summaries)
    floor = 1 + size / bandwidth / best["forward"]
    ratios = {k: round(paired_ratio(seconds, k), 3) for k in cases}
    cpu_ratios = {k: round(paired_ratio(cpu, k), 3) for k in cases}
    return {
        "model": model.name,
        "batch": batch,
        "fused_statistics": engine.fused_statistics,
        "activation_mb": round(size / 1e6, 2),
        "ms": {k: round(v * 1000, 3) for k, v in best.items()},
        "ratio_vs_forward": ratios,
        "cpu_ratio_vs_forward": cpu_ratios,
        "floor": round(floor, 3),
        "summaries_over_floor": round(ratios["summaries"] / floor, 3),
        "speedup_vs_keract": round(ratios["keract_style"] / ratios["summaries"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="batch 32 only, fewer repeats")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    batches = (32,) if args.quick else (1, 32, 128)
    rounds = 5 if args.quick else 20
    keras.utils.set_random_seed(0)
    bandwidth = bandwidth_bytes_per_second()
    rows = [measure(build(), b, rounds, bandwidth) for build in (small_cnn, deep_cnn) for b in batches]
    devices = [d.name for d in tf.config.list_logical_devices()]
    doc = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "devices": devices,
        "bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "rows": rows,
    }
    print(json.dumps(doc, indent=1))
    print(f"\nmemory bandwidth {bandwidth / 1e9:.1f} GB/s; floor = 1 + activation bytes / bandwidth / forward")
    print("wall: paired median ratios to the forward pass; cpu: the same for process CPU time per call")
    header = ("model", "batch", "fwd ms", "act MB", "floor", "summ x", "x floor", "exact x", "full x", "host x")
    print(
        f"{header[0]:10} {header[1]:>5} " + " ".join(f"{h:>8}" for h in header[2:]),
        f"{'keract x':>9} {'faster':>7} {'cpu summ':>9} {'cpu full':>9}",
    )
    for r in rows:
        q, c = r["ratio_vs_forward"], r["cpu_ratio_vs_forward"]
        cells = (r["ms"]["forward"], r["activation_mb"], r["floor"], q["summaries"], r["summaries_over_floor"],
                 q["exact"], q["full_on_device"], q["summaries_to_host"])  # fmt: skip
        print(
            f"{r['model']:10} {r['batch']:>5} " + " ".join(f"{v:>8.2f}" for v in cells),
            f"{q['keract_style']:>9.2f} {r['speedup_vs_keract']:>6.1f}x",
            f"{c['summaries']:>9.2f} {c['full_on_device']:>9.2f}",
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
