"""Captured gradients equal what tf.GradientTape computes on the same model, batch and loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.domain.selection import Selection
from layerscope.service.errors import InvalidInput
from tests.unit.test_capture_engine import nested_two_deep, sequential, shared_and_multi_io

GRADIENTS = Selection(kinds=frozenset({"gradient", "kernel_gradient", "bias_gradient"}), full=("*",))


def kernel_gradients(
    model: keras.Model, x: np.ndarray, y: np.ndarray, loss: keras.losses.Loss, layers: list[str]
) -> dict[str, np.ndarray]:
    with tf.GradientTape() as tape:
        total = loss(y, model(x, training=False))
    kernels = [model.get_layer(name).kernel for name in layers]
    return {n: np.asarray(g) for n, g in zip(layers, tape.gradient(total, kernels), strict=True)}


def test_sequential_matches_gradient_tape() -> None:
    rng = np.random.default_rng(0)
    model = sequential()
    x = rng.normal(size=(4, 6)).astype("float32")
    y = rng.normal(size=(4, 2)).astype("float32")
    result = CaptureEngine(model).capture({"x": x}, GRADIENTS, targets={"y": y}, loss="mse")
    kernels = kernel_gradients(model, x, y, keras.losses.MeanSquaredError(), ["d1", "d2"])
    for name in ("d1", "d2"):
        np.testing.assert_allclose(result.tensors[name]["kernel_gradient"], kernels[name], rtol=1e-4, atol=1e-7)
        summary = result.summaries[name]["kernel_gradient"]
        assert summary.mean == pytest.approx(float(kernels[name].mean()), rel=1e-4, abs=1e-7)
    # The output's gradient: d(mean squared error)/d(output) = 2 (out - y) / size.
    out = np.asarray(model(x, training=False))
    np.testing.assert_allclose(result.tensors["d2"]["gradient"], 2 * (out - y) / y.size, rtol=1e-4, atol=1e-7)
    with tf.GradientTape() as tape:
        h = model.get_layer("d1")(x)
        tape.watch(h)
        loss = keras.losses.MeanSquaredError()(y, model.get_layer("d2")(model.get_layer("bn")(h, training=False)))
    np.testing.assert_allclose(result.tensors["d1"]["gradient"], tape.gradient(loss, h), rtol=1e-4, atol=1e-7)
    assert result.summaries["bn"]["gradient"].count == 4 * 5


def test_functional_multi_output_sums_each_output_loss() -> None:
    rng = np.random.default_rng(1)
    model = shared_and_multi_io()
    model.compile(optimizer="adam", loss=["mse", "mae"])
    xs = [rng.normal(size=(3, 4)).astype("float32") for _ in range(2)]
    ys = [rng.normal(size=(3, 1)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")]
    engine = CaptureEngine(model, compile_config=model.get_compile_config())
    result = engine.capture({"a": xs[0], "b": xs[1]}, GRADIENTS, targets={"score": ys[0], "aux": ys[1]})
    with tf.GradientTape() as tape:
        score, aux = model(xs, training=False)
        total = keras.losses.MeanSquaredError()(ys[0], score) + keras.losses.MeanAbsoluteError()(ys[1], aux)
    variables = [model.get_layer(n).kernel for n in ("shared", "score", "aux")] + [model.get_layer("aux").bias]
    expected = tape.gradient(total, variables)
    for name, grad in zip(("shared", "score", "aux"), expected, strict=False):
        np.testing.assert_allclose(result.tensors[name]["kernel_gradient"], grad, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.tensors["aux"]["bias_gradient"], expected[3], rtol=1e-4, atol=1e-7)
    assert {"shared", "shared:1"} <= set(result.summaries)  # each call of the shared layer has its own gradient


def test_nested_model_gradients_reach_inner_layers() -> None:
    rng = np.random.default_rng(2)
    model = nested_two_deep()
    x = rng.normal(size=(5, 4)).astype("float32")
    y = rng.integers(0, 2, size=(5,))
    result = CaptureEngine(model).capture({"x": x}, GRADIENTS, targets={"y": y}, loss="sparse_categorical_crossentropy")
    core = model.get_layer("middle").get_layer("inner").get_layer("core")
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(y, model(x, training=False))
    np.testing.assert_allclose(
        result.tensors["middle/inner/core"]["kernel_gradient"], tape.gradient(loss, core.kernel), rtol=1e-4, atol=1e-7
    )
    assert "gradient" in result.summaries["middle/inner/core"]


def test_refusals_say_what_to_pass() -> None:
    model = sequential()
    engine = CaptureEngine(model)
    x = np.zeros((2, 6), "float32")
    y = np.zeros((2, 2), "float32")
    with pytest.raises(InvalidInput, match="Expected targets y with the gradient kinds"):
        engine.capture({"x": x}, GRADIENTS)
    with pytest.raises(InvalidInput, match="expected a loss named in the request"):
        engine.capture({"x": x}, GRADIENTS, targets={"y": y})
    with pytest.raises(InvalidInput, match=r"Expected a Keras loss identifier among .*received 'squared'"):
        engine.capture({"x": x}, GRADIENTS, targets={"y": y}, loss="squared")
    with pytest.raises(InvalidInput, match=r"batch of 2; received float32\[3, 2\]"):
        engine.capture({"x": x}, GRADIENTS, targets={"y": np.zeros((3, 2), "float32")}, loss="mse")


def test_one_trace_per_loss() -> None:
    engine = CaptureEngine(sequential())
    x, y = np.zeros((2, 6), "float32"), np.zeros((2, 2), "float32")
    for _ in range(3):
        engine.capture({"x": x}, GRADIENTS, targets={"y": y}, loss="mse")
    traced = engine.traces
    engine.capture({"x": x}, GRADIENTS, targets={"y": y}, loss="mae")
    assert engine.traces == traced + 1


def test_a_wrapper_layer_names_each_weight_gradient_by_its_owner() -> None:
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [keras.Input((3, 2)), keras.layers.Bidirectional(keras.layers.LSTM(2), name="bi"), keras.layers.Dense(1)]
    )
    x, y = np.ones((2, 3, 2), "float32"), np.ones((2, 1), "float32")
    result = CaptureEngine(model).capture({"x": x}, GRADIENTS, targets={"y": y}, loss="mse")
    assert {
        "forward_lstm/kernel_gradient",
        "forward_lstm/recurrent_kernel_gradient",
        "backward_lstm/bias_gradient",
    } <= set(result.summaries["bi"])
