"""Where inference runs, for many models: resident memory and time to load ten small models per placement.

    .venv/bin/python bench/bench_placement.py [--models 10] [--json out.json]

Ten small CNNs (bench_capture's, each with its own seed) in a repository layout (`name/1/model.keras`), loaded
as the server loads them at start (`WorkerPool.open`, one after another) under each placement: a process per
model (`models_per_worker=1`), shared workers of 4, one shared worker for all, and in the server's own
process (`model_workers=false`, measured in a fresh child so its TensorFlow is counted alone). Printed per
placement: worker processes, their summed resident memory (VmRSS after each has answered one Predict), the
largest one, and the time from the first load to the last. Proportional set size is not used: shared
libraries are counted once per process, which is what a memory limit per pod sees.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerscope.service.runtime.quiet_start import start_tensorflow

start_tensorflow()

import keras  # noqa: E402 - after the quiet start
import numpy as np  # noqa: E402

from bench.bench_capture import small_cnn  # noqa: E402
from layerscope.service.settings import Settings  # noqa: E402
from layerscope.service.workers.model_worker import WorkerEngine  # noqa: E402
from layerscope.service.workers.pool import WorkerPool  # noqa: E402


class Quiet:
    """A WorkerObserver that fails the run on a restart (a crash would spoil the figures)."""

    def restarted(self, model: str, cause: str) -> None:
        raise RuntimeError(f"a worker of {model} died during the benchmark: {cause}")

    def resident(self, model: str, version: int, size: int | None) -> None:
        pass

    def crossed(self, model: str, seconds: float) -> None:
        pass


def repository(folder: Path, count: int) -> list[tuple[str, Path]]:
    models = []
    for i in range(count):
        keras.utils.set_random_seed(i)
        path = folder / f"cnn{i}" / "1" / "model.keras"
        path.parent.mkdir(parents=True)
        small_cnn().save(path)
        models.append((f"cnn{i}", path))
    return models


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def with_workers(models: list[tuple[str, Path]], per_worker: int) -> dict[str, Any]:
    settings = Settings(model_workers=True, models_per_worker=per_worker, max_workers=len(models))
    pool = WorkerPool(settings, Quiet())
    started = time.perf_counter()
    try:
        loaded = [pool.open(path, name, 1) for name, path in models]
        seconds = time.perf_counter() - started
        x = {"image": np.zeros((1, 28, 28, 1), "float32")}
        for model in loaded:
            model.engine.predict(x)
        pids = {m.engine.pid for m in loaded if isinstance(m.engine, WorkerEngine)}
        sizes = [resident(pid) for pid in pids]
    finally:
        pool.close_all()
    mb = [size / 2**20 for size in sizes]
    return {"processes": len(pids), "resident_mb": sum(mb), "largest_mb": max(mb), "load_s": seconds}


IN_PROCESS = """
import os, sys, time, json
from pathlib import Path
sys.path.insert(0, {root!r})
from layerscope.service.runtime.quiet_start import start_tensorflow
start_tensorflow()
import numpy as np
from layerscope.service.models.registry import open_model
from layerscope.service.runtime.native import SummaryOpLoader
op = SummaryOpLoader(); op.load()
before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
started = time.perf_counter()
models = [open_model(Path(p), n, 1, summary_op=op) for n, p in {models!r}]
seconds = time.perf_counter() - started
for m in models:
    m.engine.predict({{"image": np.zeros((1, 28, 28, 1), "float32")}})
size = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
print(json.dumps({{"processes": 0, "resident_mb": size / 2**20, "largest_mb": size / 2**20, "load_s": seconds,
                  "before_models_mb": before / 2**20}}))
"""


def in_process(models: list[tuple[str, Path]]) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parent.parent)
    code = IN_PROCESS.format(root=root, models=[(n, str(p)) for n, p in models])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the in-process child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        models = repository(Path(folder), args.models)
        rows["in the server (model_workers=false)"] = in_process(models)
        for per_worker in (1, 4, args.models):
            rows[f"models_per_worker={per_worker}"] = with_workers(models, per_worker)
    doc = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "models": args.models}
    doc["rows"] = rows
    print(json.dumps(doc, indent=1))
    print(f"\n{args.models} small CNNs loaded")
    print(f"{'placement':38} {'processes':>9} {'resident MB':>12} {'largest MB':>11} {'load s':>7}")
    for name, r in rows.items():
        print(f"{name:38} {r['processes']:>9} {r['resident_mb']:>12.0f} {r['largest_mb']:>11.0f} {r['load_s']:>7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
