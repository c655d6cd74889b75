"""Through the service: all-layer summary capture vs a plain Predict of the same batch, side by side.

    .venv/bin/python bench/bench_service_capture.py [--batches 32 128] [--repeats 15]

Starts `layerscope serve` as its own process (as deployed) on a repository holding the bench models,
then, per model and batch, alternates `Client.predict(x)` and `Client.capture(x, layers="*",
kinds=("activation",))` (summaries computed, copied, sent and stored in SQLite) and prints medians and
their ratio. Each capture is a stored run, so the figure includes the write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_capture import deep_cnn, small_cnn
from bench.bench_stream import own_process
from layerscope.client import Client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for build in (small_cnn, deep_cnn):
            model = build()
            target = root / "repository" / model.name / "1"
            target.mkdir(parents=True)
            model.save(target / "model.keras")
        with own_process(root, 2 * 2**20) as address, Client(address, timeout=300) as client:
            for name, shape in (("small_cnn", (28, 28, 1)), ("deep_cnn", (64, 64, 3))):
                for batch in args.batches:
                    rows.append(measure(client, name, shape, batch, args.repeats))
    print(json.dumps(rows, indent=1))
    print(f"\n{'model':10} {'batch':>5} {'predict ms':>11} {'capture ms':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:10} {r['batch']:>5} {r['predict_ms']:>11.2f} {r['capture_ms']:>11.2f} {r['ratio']:>6.3f}")


def measure(client: Client, name: str, shape: tuple[int, ...], batch: int, repeats: int) -> dict[str, object]:
    x = np.random.default_rng(0).normal(size=(batch, *shape)).astype("float32")
    calls = {
        "predict": lambda: client.predict(name, x),
        "capture": lambda: client.capture(name, x, layers="*", kinds=("activation",)),
    }
    for call in calls.values():  # warm up: trace both functions
        call()
        call()
    seconds: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):  # alternate, so drift on a shared machine hits both alike
        for key, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[key].append(time.perf_counter() - started)
    predict, capture = statistics.median(seconds["predict"]), statistics.median(seconds["capture"])
    ratios = [c / p for p, c in zip(seconds["predict"], seconds["capture"], strict=True)]
    return {
        "model": name,
        "batch": batch,
        "predict_ms": round(predict * 1000, 2),
        "capture_ms": round(capture * 1000, 2),
        "ratio": round(capture / predict, 3),
        "median_pair_ratio": round(statistics.median(ratios), 3),
    }


if __name__ == "__main__":
    main()
