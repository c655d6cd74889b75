"""Models audited per second: 100 small models, `layerscope audit --jobs 1` against `--jobs 2`.

    .venv/bin/python bench/bench_audit.py [--models 100]

Times the whole command as a user runs it (start-up and TensorFlow import included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras


def build_models(folder: Path, count: int) -> None:
    for i in range(count):
        keras.utils.set_random_seed(i)
        model = keras.Sequential(
            [
                keras.Input((16,)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(4, activation="softmax"),
            ],
            name=f"mlp_{i:03d}",
        )
        model.save(folder / f"mlp_{i:03d}.keras")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_models(Path(tmp), args.models)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        for jobs in (1, 2):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "layerscope.cli", "audit", tmp, "--jobs", str(jobs), "--format", "json",
                 "--fail-on", "never", "--quiet"],
                capture_output=True, text=True, env=env,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            audited = len(json.loads(done.stdout)["models"])
            results[f"jobs_{jobs}"] = {"seconds": round(elapsed, 1), "models_per_s": round(audited / elapsed, 2)}
    print(json.dumps({"models": args.models, "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
