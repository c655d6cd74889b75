"""The training probe: optimizer steps on a clone, measurements per step, the served weights untouched."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.errors import InvalidInput


def classifier() -> keras.Model:
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(8, activation="tanh", name="squash"),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ],
        name="classifier",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")


def test_probe_lowers_the_loss_and_never_touches_the_served_weights() -> None:
    model = classifier()
    before = [np.array(w, copy=True).tobytes() for w in model.get_weights()]
    engine = CaptureEngine(model, compile_config=model.get_compile_config())
    x, y = batch()
    result = engine.probe({"x": x}, {"y": y}, steps=5)
    assert [w.tobytes() for w in model.get_weights()] == before
    assert [s.step for s in result.steps] == [0, 1, 2, 3, 4, 5]
    assert result.steps[-1].loss < result.steps[0].loss
    assert result.optimizer == "Adam(learning_rate=0.01)"
    assert result.loss == "sparse_categorical_crossentropy"
    assert result.learning_layers == ("hidden", "bn", "squash", "head")
    first = result.steps[0]
    assert set(first.gradient_norms) == {"hidden", "bn", "squash", "head"}
    assert all(v > 0 for v in first.gradient_norms.values())
    assert set(first.update_ratios) == {"hidden", "bn", "squash", "head"}
    assert 0 < first.update_ratios["hidden"] < 1
    assert result.steps[-1].update_ratios == {}
    assert set(first.dead_fractions) == {"hidden"} and set(first.saturated_fractions) == {"squash"}
    # A second probe reuses the clone but starts where a new one would (served weights, fresh optimizer):
    # the same losses step by step; the served weights are still untouched.
    again = engine.probe({"x": x}, {"y": y}, steps=5)
    assert [s.loss for s in again.steps] == pytest.approx([s.loss for s in result.steps], rel=1e-5)
    assert [w.tobytes() for w in model.get_weights()] == before


def test_named_optimizer_and_learning_rate_override_the_compiled_ones() -> None:
    model = classifier()
    x, y = batch()
    engine = CaptureEngine(model, compile_config=model.get_compile_config())
    result = engine.probe({"x": x}, {"y": y}, steps=2, optimizer="sgd", learning_rate=1e-9)
    assert result.optimizer == "SGD(learning_rate=1e-09)"
    assert result.steps[-1].loss == pytest.approx(result.steps[0].loss, rel=1e-5)
    with pytest.raises(InvalidInput, match=r"Expected an optimizer among .*received 'adamx'"):
        engine.probe({"x": x}, {"y": y}, steps=1, optimizer="adamx")
    with pytest.raises(InvalidInput, match=r"learning rate in \(0, 1000\); received -1.0"):
        engine.probe({"x": x}, {"y": y}, steps=1, optimizer="sgd", learning_rate=-1.0)


def dropout_classifier() -> keras.Model:
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.GaussianNoise(0.3, name="noise"),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ],
        name="dropout_classifier",
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def test_a_probe_draws_the_same_dropout_for_the_same_request() -> None:
    """Dropout and noise in training mode draw from seed generators: seeded from the request, two probes of
    the same batch (one engine twice, or a fresh engine as in another process) give the same steps, and
    another batch draws other masks."""
    model = dropout_classifier()
    x, y = batch()
    first = CaptureEngine(model, compile_config=model.get_compile_config()).probe({"x": x}, {"y": y}, steps=4)
    engine = CaptureEngine(model, compile_config=model.get_compile_config())
    for _ in range(2):
        again = engine.probe({"x": x}, {"y": y}, steps=4)
        assert [s.loss for s in again.steps] == [s.loss for s in first.steps]
        assert [s.dead_fractions for s in again.steps] == [s.dead_fractions for s in first.steps]
    other = engine.probe({"x": x[::-1].copy()}, {"y": y[::-1].copy()}, steps=4)
    assert [s.loss for s in other.steps][1:] != [s.loss for s in first.steps][1:]
