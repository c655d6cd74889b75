"""Start-up with many models, through `layerscope serve` as a user runs it: from the command's start to health
SERVING (its "serving on" line: the server answers calls) and to every model loaded (health's `layerscope.models`
SERVING), with 5 and 20 small models, loads one at a time (LAYERSCOPE_LOAD_CONCURRENCY=1) against the default (a
few at once: the CPUs this process may use), model workers off, on as shipped (small models share a worker,
four to a process) and solo (LAYERSCOPE_MODELS_PER_WORKER=1: a process per model). The configurations run side
by side: each round runs every one of them in turn, so a change in the machine's load falls on all alike.

    .venv/bin/python bench/bench_startup.py [--models 5 20] [--workers off on solo] [--rounds 1] [--json out.json]
    .venv/bin/python bench/bench_startup.py --baseline /path/to/older/checkout   # adds its rows, side by side

Before round 4 of issue #25 the server said SERVING only after its last model had loaded, one after another: the
"all loaded" column of the serial rows is what a readiness check waited for then; `--baseline DIR` measures such
a checkout's sources too (its "serving on" line, which came after its last load), in the same rounds. Workers off
runs inference in the server with no trial load in a child (LAYERSCOPE_ISOLATED_LOADING=false), as tests and a
trusted model do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.metrics import scrape  # noqa: E402
from tests.support.serve_process import MODELS_SERVICE, serve_process, wait_until_serving  # noqa: E402

EXAMPLES = ROOT / "examples" / "models"
SMALL = ("healthy_cnn", "dead_relu", "dense_on_image")  # 35-70 KB archives, a few thousand parameters
TIMEOUT = 1200.0


def fill(repository: Path, count: int) -> None:
    """`count` models m00.. , the example archives in turn, version 1 each."""
    for i in range(count):
        folder = repository / f"m{i:02d}" / "1"
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes((EXAMPLES / f"{SMALL[i % len(SMALL)]}.keras").read_bytes())


def start_up(count: int, workers: str, serial: bool, baseline: Path | None = None) -> dict[str, Any]:
    """One start: seconds to SERVING, to every model loaded, and the server's own figures (from /metrics).
    `workers`: off, on (as shipped: small models share a worker, LAYERSCOPE_MODELS_PER_WORKER) or solo (a
    process per model)."""
    env = {"LAYERSCOPE_ISOLATED_LOADING": "false", "LAYERSCOPE_MONITOR_SAMPLE_RATE": "0"}
    if workers == "solo":
        env["LAYERSCOPE_MODELS_PER_WORKER"] = "1"
    if serial:
        env["LAYERSCOPE_LOAD_CONCURRENCY"] = "1"
    if baseline is not None:
        return older_start_up(count, workers != "off", baseline, env)
    with tempfile.TemporaryDirectory() as tmp:
        fill(Path(tmp) / "models", count)
        began = time.perf_counter()
        with serve_process(Path(tmp), env, TIMEOUT, workers=workers != "off", wait_for_models=False) as server:
            serving = time.perf_counter() - began
            wait_until_serving(server.target, MODELS_SERVICE, TIMEOUT)
            loaded = time.perf_counter() - began
            metrics = scrape(server.metrics_url)
    loads = [v for k, v in metrics.items() if k.startswith("layerscope_model_load_seconds{")]
    assert len(loads) == count, f"expected {count} models loaded; /metrics names {len(loads)}"
    return {
        "serving": serving,
        "loaded": loaded,
        "server_serving": metrics['layerscope_start_seconds{phase="serving"}'],
        "server_loaded": metrics['layerscope_start_seconds{phase="models"}'],
        "load_median": statistics.median(loads),
        "load_max": max(loads),
    }


def older_start_up(count: int, workers: bool, checkout: Path, env: dict[str, str]) -> dict[str, Any]:
    """A start of an older checkout's server, which said SERVING ("serving on") only after loading every model."""
    env = {**env, "PYTHONPATH": f"{checkout / 'client'}:{checkout / 'service'}"}
    with tempfile.TemporaryDirectory() as tmp:
        fill(Path(tmp) / "models", count)
        began = time.perf_counter()
        with serve_process(Path(tmp), env, TIMEOUT, workers=workers, wait_for_models=False):
            serving = time.perf_counter() - began
    return {"serving": serving, "loaded": serving, "load_median": math.nan, "load_max": math.nan}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--workers", choices=["off", "on", "solo"], nargs="+", default=["off", "on", "solo"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", type=Path, help="an older checkout (its client/ and service/) to start too")
    args = parser.parse_args()
    kinds: list[str | None] = ["serial", "concurrent", *(["baseline"] if args.baseline else [])]
    configs = [(n, w, kind) for n in args.models for w in args.workers for kind in kinds]
    runs: dict[str, list[dict[str, Any]]] = {}
    cpus = len(os.sched_getaffinity(0))
    figures: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {cpus} CPUs"}
    figures["load_average_before"] = os.getloadavg()
    for _ in range(args.rounds):
        for count, workers, kind in configs:
            key = f"{count} models, workers {workers}, {kind}"
            older = args.baseline if kind == "baseline" else None
            runs.setdefault(key, []).append(start_up(count, workers, kind != "concurrent", older))
            print(f"  done: {key}", file=sys.stderr, flush=True)
    figures["load_average_after"] = os.getloadavg()
    figures["runs"] = runs
    print(f"{figures['machine']}; loads at once: serial 1, concurrent {cpus} (capped by LAYERSCOPE_MAX_WORKERS)")
    print(f"{'configuration':<40} {'SERVING':>8} {'all loaded':>11} {'one load (median/max)':>22}")
    for key, each in runs.items():
        serving = statistics.median(r["serving"] for r in each)
        loaded = statistics.median(r["loaded"] for r in each)
        one = f"{statistics.median(r['load_median'] for r in each):.1f} / {max(r['load_max'] for r in each):.1f} s"
        one = "" if math.isnan(each[0]["load_median"]) else one
        print(f"{key:<40} {serving:7.1f}s {loaded:10.1f}s {one:>22}")
    print(f"load average before {figures['load_average_before']}, after {figures['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
