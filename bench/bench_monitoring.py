"""What live-traffic monitoring costs: Predict through served processes sampling at 0, 1, 5 and 100%.

    .venv/bin/python bench/bench_monitoring.py [--quick] [--json out.json]

Serving: four servers in this process (`tests.conftest.start_server`, as the integration tests run them),
alive at once, each with both bench models of bench_capture.py (a small CNN and a 12-Conv2D 64x64 CNN) in its
repository: monitor_sample_rate 0 (monitoring off: no Monitor is built), 0.01, 0.05 and 1.0, with
monitor_cpu_budget 1.0 (sampling never backs off, so its cost shows), monitor_window_seconds 60 and
monitor_reference_requests 10 (every monitored model has its reference, and so computes drift features on
every sample, before timing starts). Rounds of N Predict calls through the real client go to each server in
turn (the order rotated per round), per model and batch (1 and 32); after each server's calls the bench waits
until that server's monitor has processed every sample it was offered, and counts the wait in the round's
time, so the throughput is the one the monitor can keep up with. Reported:

- the median over rounds of (round time on a server) / (round time on the off server in the same round),
  the ratio of their total times, and 1 + rate x (the 100% ratio - 1), what a rate costs if a sample costs
  what it costs at 100% (on a loaded machine steadier than the direct ratio at 1-5%);
- p50 and p99 latency of the calls the sampler did NOT take (request k of a model is sampled when
  floor((k + 1) r) > floor(k r); the bench counts each server's requests per model as the server does), and
  p50 of the sampled ones;
- on the off server, an all-layer summary Capture (`client.capture(name, x, kinds=("activation",))`, stored
  as a run) against Predict, the cost a 100% rate should stay under.

Targets: at 5% <= 1.03x (bar 1.05x); at 100% no worse than a summary capture.

Then 1, 2 and 4 clients at once send Predicts to the 5% server: how many of the requests its sampler took
were captured, and how many skipped as "busy" (another call queued or running on the model).

Monitoring's own state, measured directly (the process's resident size is shared by four servers): the
bytes of one sample on the monitor's queue, of a model's reference, of an open and a closed window (numpy
nbytes and tracemalloc of a copy), for real summaries of both models at batch 32; and the monitor thread's
time per sample (`ModelMonitor.add`, with the real health gauges), per window close (judging) and per
reference build.

Client, servers and monitor threads share this process's interpreter, as in the integration tests.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layerscope.service.runtime.quiet_start import start_tensorflow

start_tensorflow()

import keras  # noqa: E402 - after the quiet start
import numpy as np  # noqa: E402

from bench.bench_capture import deep_cnn, small_cnn  # noqa: E402
from layerscope.client import Client  # noqa: E402
from layerscope.service.diagnosis.diagnoser import Diagnoser  # noqa: E402
from layerscope.service.domain.summary import Summary  # noqa: E402
from layerscope.service.inspector import LIVE_SELECTION  # noqa: E402
from layerscope.service.model_health import HealthGauges  # noqa: E402
from layerscope.service.models.registry import LoadedModel, open_model  # noqa: E402
from layerscope.service.monitoring.model_monitor import ModelMonitor, MonitorConfig, Sample  # noqa: E402
from layerscope.service.monitoring.window import Window  # noqa: E402
from layerscope.service.runtime.native import SummaryOpLoader  # noqa: E402
from tests.conftest import ServerHandle, start_server  # noqa: E402

RATES = (0.0, 0.01, 0.05, 1.0)
SHAPES = {"small_cnn": (28, 28, 1), "deep_cnn": (64, 64, 3)}
REFERENCE_REQUESTS = 10
SERVER_SETTINGS = {
    "monitor_cpu_budget": 1.0,
    "monitor_window_seconds": 60.0,
    "monitor_reference_requests": REFERENCE_REQUESTS,
    "replica": "bench",
}


def sampled(k: int, rate: float) -> bool:
    """Whether a server's sampler takes request k (0-based, per model version): `Sampler.take`'s rule."""
    return math.floor((k + 1) * rate) > math.floor(k * rate)


class Served:
    """One server, its client, and the count of Predict requests it received per model."""

    def __init__(self, folder: Path, rate: float) -> None:
        self.rate = rate
        self.handle: ServerHandle = start_server(folder, monitor_sample_rate=rate, **SERVER_SETTINGS)
        self.client = Client(self.handle.target, timeout=300)
        self.seen: dict[str, int] = dict.fromkeys(SHAPES, 0)
        self.expected: dict[str, int] = dict.fromkeys(SHAPES, 0)
        """Samples the server's sampler took, per model (the bench's own count)."""

    def predict(self, name: str, x: np.ndarray) -> tuple[float, bool]:
        """One timed Predict; whether the sampler took it."""
        taken = self.rate > 0 and sampled(self.seen[name], self.rate)
        self.seen[name] += 1
        self.expected[name] += int(taken)
        started = time.perf_counter()
        self.client.predict(name, x)
        return time.perf_counter() - started, taken

    def drain(self, name: str, timeout: float = 120.0) -> float:
        """Seconds until the monitor's thread has taken every sample offered so far (0 with monitoring off)."""
        monitor = self.handle.app.inspector._monitor
        if monitor is None:
            return 0.0
        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            watched = monitor._models.get((name, 1))
            done = watched.samples + sum(watched.skipped.values()) if watched is not None else 0
            if done >= self.expected[name]:
                return time.perf_counter() - started
            time.sleep(0.0005)
        raise RuntimeError(f"the monitor of the {self.rate:.0%} server fell behind on {name}")

    def close(self) -> None:
        self.client.close()
        self.handle.stop()


def warm_up(servers: list[Served]) -> dict[str, dict[str, dict[str, float]]]:
    """Trace every function and let every monitored model build its reference (batch 1). Returns, per server
    and model, the latency of the first call (batch 32: it traces a function), of the first sampled call after
    it (batch 1; the first to trace the capture function where the first call was not sampled) and the
    median of the warm-up calls."""
    first: dict[str, dict[str, dict[str, float]]] = {}
    rng = np.random.default_rng(1)
    for server in servers:
        first[f"{server.rate:g}"] = {}
        for name, shape in SHAPES.items():
            x = rng.random((1, *shape), dtype=np.float32)
            # The first call traces the forward pass (or, where it is sampled, the capture function).
            first_call, _ = server.predict(name, rng.random((32, *shape), dtype=np.float32))
            need = 30 if not server.rate else max(30, math.ceil((REFERENCE_REQUESTS + 2) / server.rate))
            times, first_sampled = [], None
            for _ in range(need):
                seconds, taken = server.predict(name, x)
                times.append(seconds)
                if taken and first_sampled is None:
                    first_sampled = seconds
            server.drain(name)
            first[f"{server.rate:g}"][name] = {
                "first_call_ms": round(first_call * 1000, 1),
                "first_sampled_ms": round(first_sampled * 1000, 1) if first_sampled else None,
                "median_ms": round(statistics.median(times) * 1000, 2),
            }
    for server in servers:
        if server.rate:
            for name in SHAPES:
                status = server.client.monitor(name)
                assert status.reference is not None, f"{name} at {server.rate:.0%}: no reference after warm-up"
    return first


def measure(servers: list[Served], name: str, batch: int, calls: int, captures: int, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(batch)
    x = rng.random((batch, *SHAPES[name]), dtype=np.float32)
    off = servers[0]
    block: dict[str, list[float]] = {f"{s.rate:g}": [] for s in servers}
    drains: dict[str, list[float]] = {f"{s.rate:g}": [] for s in servers}
    unsampled: dict[str, list[float]] = {f"{s.rate:g}": [] for s in servers}
    taken: dict[str, list[float]] = {f"{s.rate:g}": [] for s in servers}
    capture_times: list[float] = []
    capture_blocks: list[float] = []
    for round_ in range(rounds):
        order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
        for server in order:
            key = f"{server.rate:g}"
            spent = 0.0
            for _ in range(calls):
                seconds, was_sampled = server.predict(name, x)
                spent += seconds
                (taken if was_sampled else unsampled)[key].append(seconds)
            drained = server.drain(name)
            drains[key].append(drained)
            block[key].append((spent + drained) / calls)
        spent = 0.0
        for _ in range(captures):  # the reference: a summary capture on the off server, stored as a run
            started = time.perf_counter()
            off.client.capture(name, x, kinds=("activation",))
            capture_times.append(time.perf_counter() - started)
            spent += capture_times[-1]
        capture_blocks.append(spent / captures)
    row: dict[str, Any] = {"model": name, "batch": batch, "calls_per_round": calls, "rounds": rounds, "rates": {}}
    base = block["0"]
    capture_ms = statistics.median(capture_times) * 1000
    row["capture_ms"] = round(capture_ms, 3)
    row["capture_over_predict"] = round(statistics.median(c / p for c, p in zip(capture_blocks, base, strict=True)), 3)
    for server in servers:
        key = f"{server.rate:g}"
        ratios = [b / o for b, o in zip(block[key], base, strict=True)]
        calls_unsampled = unsampled[key]
        row["rates"][key] = {
            "per_call_ms": round(statistics.median(block[key]) * 1000, 3),
            "ratio": round(statistics.median(ratios), 4),
            "total_ratio": round(sum(block[key]) / sum(base), 4),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "unsampled_calls": len(calls_unsampled),
            "unsampled_p50_ms": round(float(np.percentile(calls_unsampled, 50)) * 1000, 3) if calls_unsampled else None,
            "unsampled_p99_ms": round(float(np.percentile(calls_unsampled, 99)) * 1000, 3) if calls_unsampled else None,
            "all_p99_ms": round(float(np.percentile(calls_unsampled + taken[key], 99)) * 1000, 3),
            "sampled_calls": len(taken[key]),
            "sampled_p50_ms": round(statistics.median(taken[key]) * 1000, 3) if taken[key] else None,
            "drain_ms_per_round": round(statistics.median(drains[key]) * 1000, 3),
            "over_capture": round(statistics.median(block[key]) * 1000 / capture_ms, 3),
        }
    full = row["rates"]["1"]["ratio"]
    for key, x in row["rates"].items():  # what the 100% server's extra cost implies at this rate
        x["implied_by_100"] = round(1 + float(key) * (full - 1), 4)
    return row


def concurrent_skips(server: Served, name: str, threads: int, calls: int) -> dict[str, Any]:
    """`threads` clients sending `calls` Predicts each at once: how many of the requests the sampler took were
    captured, and how many were skipped because another call was queued or running on the model ("busy")."""
    before = server.client.monitor(name)
    first = server.seen[name]
    x = np.random.default_rng(5).random((1, *SHAPES[name]), dtype=np.float32)

    def send() -> None:
        with Client(server.handle.target, timeout=300) as client:
            for _ in range(calls):
                client.predict(name, x)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    server.seen[name] += threads * calls
    took = sum(sampled(k, server.rate) for k in range(first, server.seen[name]))
    server.expected[name] += took
    server.drain(name)
    after = server.client.monitor(name)
    skipped = {k: v - before.skipped.get(k, 0) for k, v in after.skipped.items() if v - before.skipped.get(k, 0)}
    return {
        "model": name,
        "rate": server.rate,
        "threads": threads,
        "requests": threads * calls,
        "requests_per_second": round(threads * calls / seconds, 1),
        "sampler_took": took,
        "captured": after.samples - before.samples,
        "skipped": skipped,
    }


# -- monitoring's own state: memory and the monitor thread's time -----------------------------------------------


def retained_bytes(make: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated (tracemalloc) after `make()` returned, with what it made kept alive."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    made = make()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, made


def fresh(summary: Summary) -> Summary:
    """A copy built as `capture.stats.unpack` builds a summary: new Python floats and ints from NumPy values
    (`copy.deepcopy` would share the tuples of floats with the original)."""
    values = {}
    for f in dataclasses.fields(summary):
        value = getattr(summary, f.name)
        if isinstance(value, float):
            value = float(np.float64(value))
        elif f.name == "histogram":
            value = tuple(int(h) for h in np.asarray(value, dtype=np.int64))
        elif isinstance(value, tuple):
            value = tuple(float(v) for v in np.asarray(value, dtype=np.float64))
        values[f.name] = value
    return Summary(**values)


def array_bytes(window: Window) -> int:
    return sum(v.nbytes for layer in window.layers.values() for v in vars(layer).values() if isinstance(v, np.ndarray))


def state_of(loaded: LoadedModel, requests: int, repeats: int) -> dict[str, Any]:
    """Bytes of a sample, a reference and a window, and the monitor thread's time per sample, per close and per
    reference build, for real summaries of `loaded` at batch 32."""
    name = loaded.info.name
    spec = loaded.engine.inputs[0]
    rng = np.random.default_rng(0)
    measure_fn = HealthGauges.of(Diagnoser()).measure(loaded.description)
    summaries = []
    for _ in range(requests):
        x = {spec.name: rng.random((32, *SHAPES[name]), dtype=np.float32)}
        result = loaded.engine.capture(x, LIVE_SELECTION)
        summaries.append({p: k["activation"] for p, k in result.summaries.items() if "activation" in k})
    config = MonitorConfig(window_seconds=300, reference_requests=200, false_alarms_per_week=1, replica="bench")
    at = datetime(2026, 12, 7, tzinfo=UTC)

    def samples(count: int) -> list[Sample]:  # distinct objects, as distinct requests bring
        return [
            Sample({p: fresh(s) for p, s in summaries[i % requests].items()}, 0, measure_fn, at=at)
            for i in range(count)
        ]

    sample_bytes, _ = retained_bytes(lambda: samples(1))
    monitor = ModelMonitor(name, 1, 0.05, config)
    collecting = []
    for sample in samples(200):
        started = time.perf_counter()
        monitor.add(sample)
        collecting.append(time.perf_counter() - started)
    started = time.perf_counter()
    reference = monitor.reference_ready()
    build_seconds = time.perf_counter() - started
    assert reference is not None
    reference_bytes, _ = retained_bytes(lambda: copy.deepcopy(reference))
    reference_arrays = sum(a.nbytes for r in reference.layers.values() for a in (r.edges, r.mean, r.variance))
    monitor.close(at)
    monitor.adopt(reference)
    judged = samples(max(repeats, 20))
    add_seconds = []
    for sample in judged:
        started = time.perf_counter()
        monitor.add(sample)
        add_seconds.append(time.perf_counter() - started)
    window = monitor.current
    assert window is not None and window.reference_id == reference.reference_id
    layers_only = Window(**{**vars(window), "edges": {}, "drift": {}})  # the edges are the reference's, shared
    open_bytes, _ = retained_bytes(lambda: copy.deepcopy(layers_only))
    one = ModelMonitor(name, 1, 0.05, config)
    one.adopt(reference)
    one.add(judged[0])
    assert one.current is not None
    one_bytes, _ = retained_bytes(lambda: copy.deepcopy(Window(**{**vars(one.current), "edges": {}, "drift": {}})))
    close_seconds = []
    for _ in range(repeats):
        monitor.current = copy.deepcopy(window)
        started = time.perf_counter()
        closed = monitor.close(at + timedelta(seconds=300))
        close_seconds.append(time.perf_counter() - started)
    assert closed is not None and closed.drift
    closed_bytes, _ = retained_bytes(lambda: copy.deepcopy(Window(**{**vars(closed), "edges": {}})))
    layers = len(window.layers)
    steady = reference_bytes + closed_bytes * (config.recent_windows + 1)
    return {
        "model": name,
        "layers": layers,
        "sample_bytes": sample_bytes,
        "reference_bytes": reference_bytes,
        "reference_array_bytes": reference_arrays,
        "open_window_bytes": open_bytes,
        "open_window_one_request_bytes": one_bytes,
        "window_array_bytes": array_bytes(window),
        "closed_window_bytes": closed_bytes,
        "collecting_reference_bytes": sample_bytes * config.reference_requests,
        "steady_state_bytes": steady,
        "recent_windows": config.recent_windows,
        "add_us": round(statistics.median(add_seconds) * 1e6, 1),
        "add_us_p90": round(float(np.percentile(add_seconds, 90)) * 1e6, 1),
        "add_before_reference_us": round(statistics.median(collecting) * 1e6, 1),
        "close_ms": round(statistics.median(close_seconds) * 1000, 3),
        "reference_build_ms": round(build_seconds * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds (about two minutes)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15; --quick 4)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    logging.getLogger("layerscope").setLevel(logging.ERROR)  # drift warnings of mixed batches: not the point here
    rounds = args.rounds or (4 if args.quick else 15)
    scale = 0.5 if args.quick else 1.0
    plan = [("small_cnn", 1, 160, 10), ("small_cnn", 32, 80, 6), ("deep_cnn", 1, 80, 6), ("deep_cnn", 32, 16, 2)]
    started = time.perf_counter()
    summary_op = SummaryOpLoader()
    summary_op.load()
    state = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        archives = {}
        for build in (small_cnn, deep_cnn):
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            model = build()
            archives[model.name] = root / f"{model.name}.keras"
            model.save(archives[model.name])
        for name, path in archives.items():
            loaded = open_model(path, name, 1, summary_op=summary_op)
            state.append(state_of(loaded, 20 if args.quick else 60, 50 if args.quick else 200))
            del loaded
        print(f"monitor state measured in {time.perf_counter() - started:.0f} s", flush=True)
        servers = []
        try:
            for rate in RATES:
                home = root / f"rate-{rate:g}"
                for name, path in archives.items():
                    target = home / "repository" / name / "1"
                    target.mkdir(parents=True)
                    (target / "model.keras").write_bytes(path.read_bytes())
                servers.append(Served(home, rate))
            print(f"{len(servers)} servers up after {time.perf_counter() - started:.0f} s", flush=True)
            first = warm_up(servers)
            print(f"warmed up after {time.perf_counter() - started:.0f} s", flush=True)
            rows = []
            for name, batch, calls, captures in plan:
                rows.append(
                    measure(servers, name, batch, max(5, int(calls * scale)), max(2, int(captures * scale)), rounds)
                )
                print(f"{name} batch {batch} measured after {time.perf_counter() - started:.0f} s", flush=True)
            concurrency = [concurrent_skips(servers[2], "small_cnn", threads, 200) for threads in (1, 2, 4)]
            skipped = {f"{s.rate:g}": {n: dict(s.client.monitor(n).skipped) for n in SHAPES} for s in servers[1:]}
            processed = {f"{s.rate:g}": {n: s.client.monitor(n).samples for n in SHAPES} for s in servers[1:]}
            expected = {f"{s.rate:g}": dict(s.expected) for s in servers[1:]}
        finally:
            for server in servers:
                server.close()
    doc = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rounds": rounds,
        "settings": SERVER_SETTINGS,
        "rows": rows,
        "first_calls": first,
        "skipped": skipped,
        "concurrency": concurrency,
        "samples_processed": processed,
        "samples_expected": expected,
        "state": state,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(doc, indent=1))
    print_tables(doc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


def print_tables(doc: dict[str, Any]) -> None:
    print(
        f"\nPredict through a served process, sampling off / 1% / 5% / 100% ({doc['rounds']} interleaved rounds; "
        "ratio: median over rounds of time per call, monitor drained, over the off server's in the same round)"
    )
    print("targets: 5% <= 1.03x (bar 1.05x); 100% no worse than an all-layer summary capture")
    print(
        "range: lowest and highest round; of sums: total time over the off server's total; from 100%: "
        "1 + rate x (100% ratio - 1), the cost a rate implies if a sample costs what it costs at 100%; "
        "x capture: time per call over the median summary capture's"
    )
    header = f"{'model':10} {'batch':>5} {'rate':>5} {'ms/call':>8} {'ratio':>7} {'range':>13} {'of sums':>7} "
    header += f"{'from 100%':>9} {'x capture':>9} "
    header += f"{'unsampled p50':>13} {'p99':>8} {'calls':>6} {'sampled p50':>11} {'n':>4} {'drain ms':>8}"
    print(header)
    for r in doc["rows"]:
        for rate, x in r["rates"].items():
            p50 = f"{x['unsampled_p50_ms']:>13.2f} {x['unsampled_p99_ms']:>8.2f}" if x["unsampled_calls"] else " " * 22
            sampled_p50 = f"{x['sampled_p50_ms']:>11.2f}" if x["sampled_calls"] else f"{'-':>11}"
            low, high = x["ratio_range"]
            print(
                f"{r['model']:10} {r['batch']:>5} {float(rate):>5.0%} {x['per_call_ms']:>8.2f} {x['ratio']:>6.3f}x "
                f"[{low:.2f}, {high:.2f}] {x['total_ratio']:>6.3f}x {x['implied_by_100']:>8.3f}x "
                f"{x['over_capture']:>8.2f}x {p50} {x['unsampled_calls']:>6} "
                f"{sampled_p50} {x['sampled_calls']:>4} {x['drain_ms_per_round']:>8.2f}"
            )
        print(
            f"{'':16} summary capture on the off server: {r['capture_ms']:.2f} ms = {r['capture_over_predict']:.2f}x "
            "its Predict"
        )
    print("first calls after load (ms; a first sampled call traces the capture function):")
    for rate, models in doc["first_calls"].items():
        print(f"  {float(rate):>5.0%} {models}")
    print(f"skipped samples: {doc['skipped']}; processed {doc['samples_processed']} of {doc['samples_expected']}")
    print("\nConcurrent clients on the 5% server (small CNN, batch 1): what the sampler took, and what was captured")
    for c in doc["concurrency"]:
        print(
            f"  {c['threads']} client(s), {c['requests']} requests ({c['requests_per_second']:.0f}/s): sampler took "
            f"{c['sampler_took']}, captured {c['captured']}, skipped {c['skipped'] or 'none'}"
        )
    print(
        "\nMonitoring state per model version (batch 32 summaries; bytes: tracemalloc of a copy, arrays: numpy nbytes)"
    )
    header = f"{'model':10} {'L':>3} {'sample':>8} {'collecting 200':>14} {'reference':>10} {'(arrays)':>9} "
    header += f"{'open window':>11} {'(arrays)':>9} {'closed':>8} {'steady':>9} {'add us':>7} {'p90':>7} "
    header += f"{'add before ref':>14} {'close ms':>8} {'ref build ms':>12}"
    print(header)
    for s in doc["state"]:
        print(
            f"{s['model']:10} {s['layers']:>3} {s['sample_bytes']:>8} {s['collecting_reference_bytes']:>14} "
            f"{s['reference_bytes']:>10} {s['reference_array_bytes']:>9} {s['open_window_bytes']:>11} "
            f"{s['window_array_bytes']:>9} {s['closed_window_bytes']:>8} {s['steady_state_bytes']:>9} "
            f"{s['add_us']:>7.0f} {s['add_us_p90']:>7.0f} {s['add_before_reference_us']:>14.0f} "
            f"{s['close_ms']:>8.2f} {s['reference_build_ms']:>12.0f}"
        )
    print(
        "steady: the reference, the open window and the recent closed windows kept in memory "
        f"({doc['state'][0]['recent_windows']}); collecting: the first reference's samples, held until it is built"
    )
    print(f"(total {doc['seconds']:.0f} s; load average {doc['load_average'][0]:.1f} on {doc['cpus']} cores)")


if __name__ == "__main__":
    main()
