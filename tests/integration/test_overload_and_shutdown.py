"""Under overload the server admits what it can and refuses the rest cleanly; SIGTERM loses no run."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from layerscope.client import Client, LayerscopeError
from tests.conftest import start_server
from tests.support import models
from tests.support.serve_process import serve_process

ADMITTED = 4
CLIENTS = 4 * ADMITTED
MiB = 1024 * 1024


def rpcs_total(metrics_url: str, method: str, code: str) -> float:
    """`layerscope_rpcs_total{method=..., code=...}` as the server's /metrics shows it now (0 before the first)."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "layerscope_rpcs_total" and sample.labels == {"method": method, "code": code}:
                return sample.value
    return 0.0


def join_all(threads: list[threading.Thread], timeout: float) -> list[str]:
    """Join every thread within one overall deadline; the names of those still running after it."""
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def test_four_times_more_clients_than_admitted_get_answers_or_clean_refusals(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_concurrent_rpcs=ADMITTED, max_queue_per_model=64)
    outcomes: Counter[str] = Counter()
    messages: set[str] = set()
    unexpected: list[str] = []  # anything but a LayerscopeError: it would otherwise end its thread silently
    lock = threading.Lock()
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype("float32")
    try:
        with Client(server.target) as admin:
            admin.upload_model("cnn", models.save(models.small_cnn(), tmp_path))
        refused_before = rpcs_total(server.metrics_url, "Capture", "RESOURCE_EXHAUSTED")
        answered_before = rpcs_total(server.metrics_url, "Capture", "OK")

        def hammer(deadline: float) -> None:
            try:
                # Far beyond what a capture takes even on a slow machine: a wait must not become DEADLINE_EXCEEDED.
                with Client(server.target, timeout=120) as c:
                    for _ in range(40):  # bounded in count and in time
                        if time.monotonic() > deadline:
                            return
                        try:
                            c.capture("cnn", x, kinds=("activation",))
                            code = "OK"
                        except LayerscopeError as exc:
                            code = exc.code.name
                            with lock:
                                messages.add(exc.message)
                        with lock:
                            outcomes[code] += 1
            except BaseException as exc:
                with lock:
                    unexpected.append(f"{threading.current_thread().name}: {exc!r}")

        deadline = time.monotonic() + 20
        threads = [threading.Thread(target=hammer, args=(deadline,), name=f"client-{i}") for i in range(CLIENTS)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        # No call starts after 20 s and none outlives its 120 s timeout: 180 s is ample unless one hangs.
        still_running = join_all(threads, timeout=180)
        elapsed = time.perf_counter() - started
        refused = rpcs_total(server.metrics_url, "Capture", "RESOURCE_EXHAUSTED") - refused_before
        answered = rpcs_total(server.metrics_url, "Capture", "OK") - answered_before
        with Client(server.target) as c:
            assert c.health() == "SERVING"
    finally:
        server.stop()
    print(
        f"\noverload: {dict(outcomes)} from {CLIENTS} clients against {ADMITTED} admitted calls in {elapsed:.1f}s; "
        f"the server counted {refused:.0f} Capture RESOURCE_EXHAUSTED and {answered:.0f} OK"
    )
    assert not still_running, f"client threads still running after 180 s: {still_running}"
    assert not unexpected, unexpected
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}
    assert outcomes["OK"] > 0 and outcomes["RESOURCE_EXHAUSTED"] > 0
    assert messages == {f"Expected at most {ADMITTED} calls in flight; the server is at that limit. Retry later."}
    # The server's own counts agree with what the clients saw: every refusal counted once, none invented.
    assert refused == outcomes["RESOURCE_EXHAUSTED"]
    assert answered == outcomes["OK"]


WARM_UP = 2_000
BURSTS = 5
PER_BURST = 2_000  # 5 x 2,000 = the 10,000 measured predicts
BATCH = 512  # rows of 4 float32: 8 KiB in and 4 KiB out per request
GROWTH_BOUND_MIB = 32


def test_server_memory_stays_flat_over_ten_thousand_predicts(tmp_path: Path) -> None:
    """The server's *current* resident memory, read after warm-up and after each burst, stays flat.

    The server runs as its own process, so nothing the test process (or an earlier test) allocated counts, and
    VmRSS is what it holds now, not a high-water mark: here it moves by well under 1 MiB over 10,000 predicts.
    The bound, 32 MiB over 10,000 requests, fails any leak that grows the server by more than about 3.3 KiB a
    request; a traced function or graph kept per call grows it by far more. Checked with a scratch copy of the
    servicer that leaks in Predict: keeping each PredictRequest (its 8 KiB tensor) grew it 17, 34, 51, 68, 85 MiB
    over the five bursts, keeping a 4 KiB bytes object per call 52 MiB; both failed. Keeping 2 KiB per call grew
    it 26 MiB, which this bound lets through.
    """
    with serve_process(tmp_path, env={"LAYERSCOPE_ISOLATED_LOADING": "false"}) as server:
        with Client(server.target) as admin:
            admin.upload_model("tiny", models.save(models.dead_relu_model(), tmp_path))
        x = np.random.default_rng(0).normal(size=(BATCH, 4)).astype("float32")
        clients = [Client(server.target, timeout=120) for _ in range(4)]
        try:
            assert clients[0].predict("tiny", x)["out"].shape == (BATCH, 2)

            def burst(n: int) -> None:
                failures: list[str] = []

                def worker(c: Client) -> None:
                    try:
                        for _ in range(n // len(clients)):
                            c.predict("tiny", x)
                    except BaseException as exc:
                        failures.append(repr(exc))

                threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
                for t in threads:
                    t.start()
                assert not join_all(threads, timeout=240), "a predict worker is still running"
                assert not failures, failures

            burst(WARM_UP)  # traces, pools, caches and allocator arenas reach their steady size
            baseline = server.rss_bytes()
            after: list[int] = []
            started = time.perf_counter()
            for _ in range(BURSTS):
                burst(PER_BURST)
                after.append(server.rss_bytes())
            elapsed = time.perf_counter() - started
        finally:
            for c in clients:
                c.close()
    measured = BURSTS * PER_BURST
    growth_mib = (max(after) - baseline) / MiB
    steps = [round((r - baseline) / MiB, 1) for r in after]
    print(
        f"\n{measured:,} predicts (batch {BATCH}, 4 threads) in {elapsed:.1f}s ({measured / elapsed:.0f}/s); server "
        f"RSS {baseline / MiB:.1f} MiB after {WARM_UP:,} warm-up predicts, then {steps} MiB more after each "
        f"{PER_BURST:,}: grew {growth_mib:.1f} MiB"
    )
    assert growth_mib < GROWTH_BOUND_MIB


def stored_runs(database: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text("SELECT run_id FROM run"))]
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Attempt:
    run_id: str
    started: float  # time.monotonic()
    ended: float  # time.monotonic()
    ended_wall: float  # time.time(), to compare with the server log's clock
    code: str  # OK, the status code's name, or the repr of an exception that is no LayerscopeError


ANSWERED_BEFORE_SIGNAL = 20
GRACE_SECONDS = 20
SHUTDOWN_LOGGED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO layerscope: shutting down", re.MULTILINE)


def shutdown_logged_at(log: str) -> float:
    """When the server logged that it began shutting down, by the wall clock (the log keeps milliseconds)."""
    match = SHUTDOWN_LOGGED.search(log)
    assert match, f"no 'shutting down' line in the server log:\n{log[-4000:]}"
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@pytest.mark.timeout(300)
def test_sigterm_during_captures_drains_in_flight_ones_and_loses_no_run(tmp_path: Path) -> None:
    attempts: list[Attempt] = []
    lock = threading.Lock()
    stop = threading.Event()
    with serve_process(tmp_path, env={"LAYERSCOPE_GRACE_SECONDS": str(GRACE_SECONDS)}) as server:
        with Client(server.target) as admin:
            admin.upload_model("cnn", models.save(models.small_cnn(), tmp_path))
        x = np.ones((16, 8, 8, 1), "float32")

        def capture_until_stopped(worker: int) -> None:
            with Client(server.target, timeout=60) as c:
                for i in range(5_000):  # bounded; `stop` ends it once the server has exited
                    if stop.is_set():
                        return
                    run_id = f"w{worker}-{i}"
                    started = time.monotonic()
                    try:
                        c.capture("cnn", x, run_id=run_id)
                        code = "OK"
                    except LayerscopeError as exc:
                        code = exc.code.name
                    except BaseException as exc:
                        code = repr(exc)
                    with lock:
                        attempts.append(Attempt(run_id, started, time.monotonic(), time.time(), code))
                    if code != "OK":
                        time.sleep(0.02)  # a closing server refuses at once: no need to spin on it

        def answered() -> int:
            with lock:
                return sum(a.code == "OK" for a in attempts)

        workers = [threading.Thread(target=capture_until_stopped, args=(w,), name=f"w{w}") for w in range(4)]
        for w in workers:
            w.start()
        try:
            deadline = time.monotonic() + 60
            while answered() < ANSWERED_BEFORE_SIGNAL and time.monotonic() < deadline:
                time.sleep(0.005)
            assert answered() >= ANSWERED_BEFORE_SIGNAL, f"only {answered()} captures answered within 60 s"
            signalled = time.monotonic()
            server.terminate()  # while the four workers keep capturing
            exit_code = server.process.wait(timeout=GRACE_SECONDS + 40)
            exited = time.monotonic()
        finally:
            stop.set()
            still_running = join_all(workers, timeout=90)
        logged = shutdown_logged_at(server.stderr())
    stored = Counter(stored_runs(server.database))
    ok = {a.run_id for a in attempts if a.code == "OK"}
    failed_before = Counter(a.code for a in attempts if a.code != "OK" and a.ended <= signalled)
    failed_after = Counter(a.code for a in attempts if a.code != "OK" and a.ended > signalled)
    cancelled = [a for a in attempts if a.code == "CANCELLED"]
    # In flight when the signal went, answered OK after it (the review's criterion), and answered after the
    # server logged that it was shutting down: without the second part a server that cancelled its in-flight
    # calls would pass whenever one call happened to finish in the millisecond before it saw the signal. The log
    # truncates to the millisecond, hence the 1 ms. The workers keep calls in flight up to the moment the server
    # stops admitting them, so a draining server always has some to finish (4 to 15 ms after the log line here).
    drained = [a for a in attempts if a.code == "OK" and a.started < signalled < a.ended]
    after_log = [a.ended_wall - logged for a in drained if a.ended_wall > logged + 0.001]
    print(
        f"\nSIGTERM after {sum(a.code == 'OK' and a.ended <= signalled for a in attempts)} captures answered; "
        f"{len(drained)} in flight at it answered OK, {len(after_log)} of them after the server logged its "
        f"shutdown (up to {max(after_log, default=0) * 1000:.0f} ms after); {len(ok)} OK in all, "
        f"{sum(stored.values())} runs stored; after the signal {dict(failed_after)}"
        + (f" (CANCELLED after {[round((a.ended - a.started) * 1000, 1) for a in cancelled]} ms)" if cancelled else "")
        + f"; server exited {exited - signalled:.2f}s after the signal with code {exit_code}"
    )
    assert not still_running, f"capture workers still running: {still_running}"
    assert exit_code == 0, server.stderr()[-20000:]  # a stuck shutdown ends in a dump of every stack
    assert not failed_before, f"failures before the signal: {dict(failed_before)}"
    assert after_log, "no capture in flight at SIGTERM was answered after the server began shutting down"
    # Each answered run is stored exactly once, and no run is stored that its client was told had failed.
    assert all(n == 1 for n in stored.values()), [run for run, n in stored.items() if n != 1]
    assert set(stored) == ok, {"answered, not stored": ok - set(stored), "stored, not answered": set(stored) - ok}
    # What a closing server gives a new call: UNAVAILABLE, from gRPC itself once shutdown began (the stream is
    # refused, then the port is closed). Now and then (about 1 run in 12 here) a call that reached the server in
    # the same millisecond as the shutdown, before the server's loop had taken it from gRPC, is cancelled by gRPC
    # instead, within a few ms: CANCELLED. It never reached layerscope's code, so nothing ran and nothing was
    # stored (checked just above: every stored run was answered OK); like UNAVAILABLE, it is safe to retry.
    # Once in about 60 runs (not reproduced since) the server instead took the whole 20 s grace to exit, with one
    # CANCELLED: a call held until the grace ran out. Nothing was lost, so it passes; the exit time is printed.
    assert set(failed_after) <= {"UNAVAILABLE", "CANCELLED"}, dict(failed_after)
