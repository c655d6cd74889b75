"""Work after the deadline: a call whose caller is gone must not keep a CPU busy.

In the server process, cancellation is checked between layers, and one traced function runs to its end
(bench/README.md measures how long past the deadline; the call bounds bound it). With model workers, the
answer is to stop the worker: on main a worker ran a call whose caller had got DEADLINE_EXCEEDED on until
worker_call_timeout_seconds (300 s by default). Now it is stopped once the call has been over for
worker_abandon_grace_seconds, restarted, and not counted as a crash: cancelling calls cannot fail a model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from layerscope.client import Client, DeadlineExceededError
from tests.conftest import start_server
from tests.integration.test_model_workers import worker_pids
from tests.support import models
from tests.support.metrics import scrape


def slow_model() -> keras.Model:
    """Twelve 3x3 convolutions of 64 channels over 128x128 images: about 10 s per call at batch 64 on two cores,
    4 MiB per layer output per sample (well within the call bounds)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((128, 128, 3), name="image")
    h = x
    for i in range(12):
        h = keras.layers.Conv2D(64, 3, padding="same", name=f"conv{i}")(h)
    return keras.Model(x, keras.layers.GlobalAveragePooling2D(name="pool")(h), name="slow")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_worker_running_a_call_that_is_over_is_stopped_after_the_grace(tmp_path: Path) -> None:
    server = start_server(tmp_path, model_workers=True, worker_abandon_grace_seconds=1.0, worker_max_crashes=2)
    try:
        images = np.random.default_rng(0).random((64, 128, 128, 3), dtype=np.float32)  # 10 s or so
        with Client(server.target, timeout=300) as admin:
            admin.upload_model("slow", models.save(slow_model(), tmp_path, "slow"))
        for attempt in range(3):  # more than worker_max_crashes: abandonment is not a crash
            with Client(server.target, timeout=300) as patient:  # waits for a restart (and the warm-up)
                patient.predict("slow", images[:1])
            (pid,) = worker_pids("slow")
            with Client(server.target, timeout=1.0) as impatient, pytest.raises(DeadlineExceededError):
                impatient.predict("slow", images)
            ended = time.monotonic()
            while alive(pid) and time.monotonic() - ended < 10:
                time.sleep(0.1)
            stopped_after = time.monotonic() - ended
            assert not alive(pid), f"attempt {attempt}: the worker ran on for 10 s after its call ended"
            assert stopped_after < 1.0 + 2.0, f"stopped {stopped_after:.1f} s after the call ended (grace 1 s)"
        with Client(server.target, timeout=300) as patient:  # restarted, and not failed
            assert patient.predict("slow", images[:1])["pool"].shape == (1, 64)
        metrics = scrape(server.metrics_url)
        assert metrics['layerscope_worker_restarts_total{cause="abandoned",model="slow"}'] == 3
    finally:
        server.stop()
