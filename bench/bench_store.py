"""Run store timings on SQLite and PostgreSQL, side by side in one run.

    .venv/bin/python bench/bench_store.py [--runs 10000]

Writes one run of 200 layer summaries with 32-bin histograms (and retries it: the idempotent path);
replays a spooled backlog of small runs (7 summaries, as a small CNN's capture) one transaction per run and
one per batch, alternately, reporting runs/s and the writer's CPU per run;
lists the newest 50 of N runs, unfiltered, by model and by finding code (one run in ten has it), and
the 50 after a page token 20 pages deep; gets a run; compares two runs. PostgreSQL is measured when
LAYERSCOPE_TEST_DATABASE_URL names a server (a scratch database is created and dropped there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerscope.service.compare import compare
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunQuery, RunRecord
from layerscope.service.domain.summary import summarize
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.spool import RUNS, Spool
from layerscope.service.store.sql_store import SqlRunStore

RNG = np.random.default_rng(0)
SUMMARIES = tuple(summarize(RNG.normal(size=(16, 64))) for _ in range(8))


def run(run_id: str, created: datetime, layers: int, code: str = "dead-units") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        model_name="bench",
        model_version=1,
        model_sha256="b" * 64,
        kind="capture",
        created_at=created,
        batch_size=32,
        inputs="x: float32[32, 64]",
        device="CPU",
        duration_seconds=0.05,
        summaries=tuple(LayerSummaryRecord(f"layer_{i}", "activation", SUMMARIES[i % 8]) for i in range(layers)),
        findings=(Finding(code, Severity.WARNING, ("layer_3",), "m", "s", {"fraction": 0.8}),),
    )


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def measure(url: str, total: int) -> dict[str, float]:
    engine = create_engine(url)
    migrate(engine)
    store = SqlRunStore(engine)
    t0 = datetime.now(UTC)
    counter = iter(range(10**9))
    write = median_ms(lambda: store.save_run(run(f"big-{next(counter)}", t0, 200)), 10)
    big = store.get_run("big-0")
    retry = median_ms(lambda: store.save_run(big), 10)
    started = time.perf_counter()
    for i in range(total):
        store.save_run(run(f"small-{i}", t0 + timedelta(seconds=i), 2, "non-finite" if i % 10 == 0 else "dead-units"))
    fill = time.perf_counter() - started
    listing = median_ms(lambda: store.list_runs(RunQuery(limit=50)), 20)
    by_model = median_ms(lambda: store.list_runs(RunQuery(model_name="bench", limit=50)), 20)
    by_code = median_ms(lambda: store.list_runs(RunQuery(finding_code="non-finite", limit=50)), 20)
    deep = RunQuery(limit=50)
    for _ in range(20):
        deep = RunQuery(limit=50, page_token=store.list_runs(deep).next_page_token)
    paging = median_ms(lambda: store.list_runs(deep), 20)
    get = median_ms(lambda: store.get_run("big-0"), 20)
    comparing = median_ms(lambda: compare(store.get_run("big-0"), store.get_run("big-1")), 10)
    one_by_one, batched = replay_backlog(store, total)
    engine.dispose()
    return {
        "replay_one_per_transaction_runs_per_s": one_by_one[0],
        "replay_batched_runs_per_s": batched[0],
        "replay_one_per_transaction_cpu_ms_per_run": one_by_one[1],
        "replay_batched_cpu_ms_per_run": batched[1],
        "write_run_200_summaries_ms": write,
        "retry_run_200_summaries_ms": retry,
        "fill_runs_per_s": round(total / fill),
        "list_last_50_ms": listing,
        "list_last_50_by_model_ms": by_model,
        "list_last_50_by_finding_ms": by_code,
        "list_50_after_20_pages_ms": paging,
        "get_run_200_summaries_ms": get,
        "compare_two_runs_ms": comparing,
    }


def replay_backlog(store: SqlRunStore, total: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(runs/s, CPU ms per run) replaying a spooled backlog one run per transaction, then batched: the best
    of three alternating rounds of `total // 10` runs each."""
    alone = dataclasses.replace(RUNS, save_many=None)
    best: dict[str, tuple[float, float]] = {}
    t0 = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(3):
            for name, codec in (("alone", alone), ("batched", RUNS)):
                spool = Spool(Path(folder) / f"{name}-{round_}", max_runs=total, codec=codec)
                for i in range(max(total // 10, 10)):
                    spool.put(run(f"{name}-{round_}-{i}", t0 + timedelta(seconds=i), 7), sync=False)
                wall, cpu = time.perf_counter(), time.process_time()
                stored = spool.replay(store)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                figures = (round(stored / wall), round(cpu / stored * 1000, 3))
                best[name] = max(best.get(name, figures), figures)
    return best["alone"], best["batched"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/bench.db", args.runs)
    server = os.environ.get("LAYERSCOPE_TEST_DATABASE_URL")
    if server:
        name = f"layerscope_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            results["postgresql"] = measure(server.rsplit("/", 1)[0] + f"/{name}", args.runs)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(json.dumps({"runs": args.runs, "results": results}, indent=1))
    keys = list(next(iter(results.values())))
    print(f"\n{'metric':42}" + "".join(f"{db:>12}" for db in results))
    for key in keys:
        print(f"{key:42}" + "".join(f"{results[db][key]:>12}" for db in results))


if __name__ == "__main__":
    main()
