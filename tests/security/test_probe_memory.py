"""What a training probe keeps: counted against a bound before it is built, let go after an idle period,
held compactly, and never leaked.

On main a Diagnose with targets left a clone, the optimizer's slots and a saved copy of those slots with the
loaded model until unload (about 5x the weights with Adam), nothing bounded it, and every probe runner built
for another loss or optimizer leaked the last one's variables for good (Keras's tf.distribute update path,
traced): an auditor alternating two optimizers grew the server by 3-4x the weights per call.
"""

from __future__ import annotations

import ctypes
import gc
import os
import time
import weakref
from pathlib import Path

import keras
import numpy as np
import pytest

from layerscope.client import Client, ResourceExhaustedError
from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.errors import LimitExceeded
from tests.conftest import start_server
from tests.support import models

MB = 1_000_000


def wide(seed: int = 0) -> keras.Model:
    """36 MB of float32 weights (9.1 M parameters), like the issue's model."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((1024,), name="x")
    h = keras.layers.Dense(3000, activation="relu", name="a")(x)
    h = keras.layers.Dense(2000, activation="relu", name="b")(h)
    return keras.Model(x, keras.layers.Dense(10, name="out")(h), name="wide")


def weight_bytes(model: keras.Model) -> int:
    return sum(w.nbytes for w in model.get_weights())


X = {"x": np.random.default_rng(0).random((16, 1024), dtype=np.float32)}
Y = {"out": np.random.default_rng(1).random((16, 10), dtype=np.float32)}


def rss() -> int:
    """Resident memory after a collection and a trim: what the process holds, not what malloc keeps spare."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_kept_probe_is_counted_and_holds_its_starting_state_compactly() -> None:
    model = wide()
    engine = CaptureEngine(model)
    assert engine.probe_bytes == 0
    engine.probe(X, Y, 1, loss="mse", optimizer="adam")
    # A clone of every weight and Adam's two slots per trainable weight; the saved starting state of those
    # slots (zeros) is one number each, where main kept a second full copy of them.
    assert engine.probe_bytes == 3 * weight_bytes(model)
    engine.probe(X, Y, 1, loss="mse", optimizer="sgd")  # SGD without momentum keeps no slot
    assert engine.probe_bytes == weight_bytes(model)


def test_a_probe_past_the_bound_is_refused_before_it_is_built() -> None:
    model = wide()
    engine = CaptureEngine(model, max_probe_bytes=2 * weight_bytes(model))
    with pytest.raises(LimitExceeded) as caught:
        engine.probe(X, Y, 1, loss="mse", optimizer="adam")
    message = caught.value.message
    assert message.startswith(f"Expected a training probe that keeps at most {2 * weight_bytes(model)} bytes"), message
    assert f"would keep {3 * weight_bytes(model)}: a clone of its weights ({weight_bytes(model)} bytes)" in message
    assert "Adam(learning_rate=0.001)'s 2 slot(s) per trainable weight" in message
    assert engine.probe_bytes == 0
    assert engine.probe(X, Y, 1, loss="mse", optimizer="sgd").steps  # one that fits still runs


def test_a_kept_probe_is_let_go_after_an_idle_period_and_built_again_when_asked() -> None:
    engine = CaptureEngine(wide(), probe_idle_seconds=0.5)
    first = engine.probe(X, Y, 2, loss="mse", optimizer="adam")
    assert engine.probe_bytes > 0
    deadline = time.monotonic() + 10
    while engine.probe_bytes and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.probe_bytes == 0
    again = engine.probe(X, Y, 2, loss="mse", optimizer="adam")  # built again: the same measurements
    assert [s.loss for s in again.steps] == pytest.approx([s.loss for s in first.steps], rel=1e-5)


def test_the_release_timer_does_not_keep_an_unloaded_model_alive() -> None:
    engine = CaptureEngine(wide(), probe_idle_seconds=300)
    engine.probe(X, Y, 1, loss="mse", optimizer="adam")
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None


def test_probes_for_other_optimizers_do_not_leak_what_the_last_one_kept() -> None:
    """Each rebuild on main left the previous clone and slots behind (about 120 MB here per Diagnose)."""
    engine = CaptureEngine(wide())
    engine.predict(X)
    grown = []
    for i in range(6):
        engine.probe(X, Y, 1, loss="mse", optimizer=("adam", "rmsprop")[i % 2])
        grown.append(rss())
    assert grown[-1] - grown[1] < 100 * MB, [f"{g / MB:.0f}" for g in grown]


def test_a_diagnose_whose_probe_would_hold_too_much_is_refused(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_probe_bytes=1_000_000)
    try:
        with Client(server.target, timeout=120) as c:
            c.upload_model("wide", models.save(wide(), tmp_path, "wide"))
            with pytest.raises(ResourceExhaustedError, match="LAYERSCOPE_MAX_PROBE_BYTES"):
                c.diagnose("wide", X["x"], y=Y["out"], loss="mse", probe_steps=1)
            assert c.diagnose("wide", X["x"], y=Y["out"], loss="mse", probe_steps=0).probe is None
    finally:
        server.stop()
