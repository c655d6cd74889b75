"""Under overload the server admits what it can and refuses the rest cleanly; SIGTERM loses no run."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.client import Client, LayerscopeError
from tests.conftest import start_server
from tests.support import models

ADMITTED = 4
CLIENTS = 4 * ADMITTED


def test_four_times_more_clients_than_admitted_get_answers_or_clean_refusals(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_concurrent_rpcs=ADMITTED, max_queue_per_model=64)
    outcomes: Counter[str] = Counter()
    messages: set[str] = set()
    lock = threading.Lock()
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype("float32")
    try:
        with Client(server.target) as admin:
            admin.upload_model("cnn", models.save(models.small_cnn(), tmp_path))

        def hammer(deadline: float) -> None:
            with Client(server.target, timeout=30) as c:
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

        deadline = time.monotonic() + 20
        threads = [threading.Thread(target=hammer, args=(deadline,)) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        with Client(server.target) as c:
            assert c.health() == "SERVING"
    finally:
        server.stop()
    print(f"\noverload: {dict(outcomes)} from {CLIENTS} clients against {ADMITTED} admitted calls")
    assert set(outcomes) <= {"OK", "RESOURCE_EXHAUSTED"}
    assert outcomes["OK"] > 0 and outcomes["RESOURCE_EXHAUSTED"] > 0
    assert messages == {f"Expected at most {ADMITTED} calls in flight; the server is at that limit. Retry later."}


def test_memory_stays_flat_over_ten_thousand_requests(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with Client(server.target) as c:
            c.upload_model("tiny", models.save(models.dead_relu_model(), tmp_path))
            x = np.ones((2, 4), "float32")

            def burst(n: int) -> None:
                def worker() -> None:
                    with Client(server.target) as w:
                        for _ in range(n // 4):
                            w.predict("tiny", x)

                threads = [threading.Thread(target=worker) for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            burst(2000)  # warm up: traces, pools and caches reach their steady size
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            burst(10_000)
            elapsed = time.perf_counter() - started
            grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    finally:
        server.stop()
    print(f"\n10,000 predicts in {elapsed:.1f}s ({10_000 / elapsed:.0f}/s); peak RSS grew {grown_mib:.1f} MiB")
    assert grown_mib < 64


def stored_runs(database: Path) -> list[str]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text("SELECT run_id FROM run"))]
    finally:
        engine.dispose()


@pytest.mark.timeout(180)
def test_sigterm_during_captures_loses_no_stored_run(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LAYERSCOPE_GRACE_SECONDS": "20"}
    command = [sys.executable, "-m", "layerscope.client.cli", "serve", "--port", "0", "--metrics-port", "0",
               "--model-repository", str(tmp_path / "models"), "--database-url", f"sqlite:///{database}"]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    succeeded: list[str] = []
    failed: Counter[str] = Counter()
    try:
        assert process.stdout is not None
        match = re.search(r"serving on [^:]+:(\d+)", process.stdout.readline())
        assert match
        target = f"127.0.0.1:{match[1]}"
        with Client(target) as c:
            c.upload_model("cnn", models.save(models.small_cnn(), tmp_path))
        stop = threading.Event()

        def capture_until_stopped(worker: int) -> None:
            with Client(target, timeout=30) as c:
                for i in range(200):
                    if stop.is_set():
                        return
                    run_id = f"w{worker}-{i}"
                    try:
                        c.capture("cnn", np.ones((16, 8, 8, 1), "float32"), run_id=run_id)
                        succeeded.append(run_id)
                    except LayerscopeError as exc:
                        failed[exc.code.name] += 1
                        if exc.code is grpc.StatusCode.UNAVAILABLE:
                            return

        workers = [threading.Thread(target=capture_until_stopped, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        stop.set()
        for w in workers:
            w.join(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    stored = stored_runs(database)
    print(f"\nSIGTERM: {len(succeeded)} captures answered OK, {dict(failed)} refused, {len(stored)} stored")
    assert succeeded, "no capture finished before the signal"
    assert len(stored) == len(set(stored))
    assert set(succeeded) <= set(stored)
    assert set(failed) <= {"UNAVAILABLE", "CANCELLED"}
