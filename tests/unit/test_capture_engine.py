"""The capture engine returns exactly what Keras computes, for every model shape, without retracing."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import summarize
from layerscope.service.errors import InvalidInput

ALL = Selection(kinds=frozenset({"activation", "input", "kernel", "bias", "other"}), full=("*",))


def sequential() -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", name="d1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(2, name="d2"),
        ],
        name="seq",
    )


def shared_and_multi_io() -> keras.Model:
    """Two inputs, two outputs, and one Dense called twice."""
    keras.utils.set_random_seed(2)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, activation="tanh", name="shared")
    merged = keras.layers.Concatenate(name="merge")([shared(a), shared(b)])
    return keras.Model(
        [a, b],
        [keras.layers.Dense(1, name="score")(merged), keras.layers.Dense(2, name="aux")(merged)],
        name="multi",
    )


def nested_two_deep() -> keras.Model:
    keras.utils.set_random_seed(3)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="relu", name="core")], name="inner")
    middle = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="pre"), inner], name="middle")
    x = keras.Input((4,), name="x")
    return keras.Model(x, keras.layers.Dense(2, name="head")(middle(x)), name="outer")


def test_sequential_activations_inputs_and_every_variable_kind() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    model = sequential()
    x = rng.normal(size=(4, 6)).astype("float32")
    result = CaptureEngine(model).capture({"x": x}, ALL)
    d1 = model.get_layer("d1")(x)
    np.testing.assert_allclose(result.tensors["d1"]["activation"], d1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["bn"]["input"], d1, rtol=1e-5, atol=1e-6)
    assert set(result.tensors["bn"]) == {
        "activation",
        "input",
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    }
    assert result.summaries["d1"]["activation"].unit_activity == summarize(np.asarray(d1)).unit_activity


def test_a_layer_called_twice_is_two_capture_points_and_multi_io_works() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    model = shared_and_multi_io()
    a, b = (rng.normal(size=(3, 4)).astype("float32") for _ in range(2))
    engine = CaptureEngine(model)
    result = engine.capture({"a": a, "b": b}, ALL)
    shared = model.get_layer("shared")
    np.testing.assert_allclose(result.tensors["shared"]["activation"], shared(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["shared:1"]["activation"], shared(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["shared:1"]["input"], b)
    score, aux = model([a, b])
    np.testing.assert_allclose(result.outputs[engine.output_names[0]], score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.outputs[engine.output_names[1]], aux, rtol=1e-5, atol=1e-6)


def test_layers_inside_a_model_nested_two_levels_deep() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    model = nested_two_deep()
    x = rng.normal(size=(5, 4)).astype("float32")
    result = CaptureEngine(model).capture({"x": x}, ALL)
    middle = model.get_layer("middle")
    inner = middle.get_layer("inner")
    pre = middle.get_layer("pre")(x)
    core = inner.get_layer("core")(pre)
    np.testing.assert_allclose(result.tensors["middle/pre"]["activation"], pre, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["middle/inner/core"]["activation"], core, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["middle/inner"]["activation"], core, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.tensors["middle/inner/core"]["kernel"], inner.get_layer("core").kernel.numpy())
    assert "kernel" not in result.tensors["middle"]  # a nested model's weights belong to its own layers


def test_repeated_calls_and_new_batch_sizes_never_retrace() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    engine = CaptureEngine(sequential())
    selection = Selection()
    for batch in (1, 4, 32, 4, 1):
        engine.capture({"x": rng.normal(size=(batch, 6)).astype("float32")}, selection)
    assert engine.traces == 1
    engine.capture({"x": rng.normal(size=(2, 6)).astype("float32")}, Selection(layers=("d1",)))
    assert engine.traces == 2  # a new selection is a new function, traced once
    for _ in range(3):
        engine.predict({"x": rng.normal(size=(3, 6)).astype("float32")})
    assert engine.traces == 3


def test_compiled_functions_are_kept_for_the_most_recent_selections_only() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    engine = CaptureEngine(sequential(), max_traces=2)
    x = {"x": rng.normal(size=(2, 6)).astype("float32")}
    for pattern in ("d1", "bn", "d1", "nothing-matches", "d1"):
        engine.capture(x, Selection(layers=(pattern,)))
    assert engine.traces == 3  # d1 stayed in use, so only bn and the new pattern were traced
    engine.capture(x, Selection(layers=("bn",)))  # evicted by the unmatched pattern: traced again
    assert engine.traces == 4


@pytest.mark.parametrize(
    "selection",
    [
        Selection(full=("*",)),
        Selection(kinds=frozenset({"activation", "input", "other"}), full=("bn",)),
        Selection(layers=("d*",), kinds=frozenset({"kernel"}), full=("*",)),
        Selection(),
    ],
)
def test_the_size_of_full_tensors_is_known_before_the_capture_runs(selection: Selection) -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    engine = CaptureEngine(sequential())
    x = {"x": rng.normal(size=(5, 6)).astype("float32")}
    planned = engine.full_bytes(x, selection)
    result = engine.capture(x, selection)
    assert planned == sum(a.nbytes for kinds in result.tensors.values() for a in kinds.values())


def test_selection_by_glob_and_class_and_kind() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    engine = CaptureEngine(sequential())
    x = {"x": rng.normal(size=(2, 6)).astype("float32")}
    assert set(engine.capture(x, Selection(layers=("d*",))).summaries) == {"d1", "d2"}
    assert set(engine.capture(x, Selection(layers=("BatchNormalization",))).summaries) == {"bn"}
    only_bias = engine.capture(x, Selection(kinds=frozenset({"bias"})))
    assert {k for kinds in only_bias.summaries.values() for k in kinds} == {"bias"}


def test_non_finite_values_are_counted_not_averaged() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Activation("linear", name="id")])
    x = np.array([[1.0, np.nan, np.inf], [-np.inf, 2.0, 0.0]], "float32")
    s = CaptureEngine(model).capture({"x": x}, Selection()).summaries["id"]["activation"]
    assert (s.nan, s.posinf, s.neginf, s.count) == (1, 1, 1, 6)
    assert (s.min, s.max, s.mean) == (0.0, 2.0, 1.0)
    assert sum(s.histogram) == 3


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 5), "float32"), "expects shape (None, 6); received (2, 5)"),
        (np.zeros((2, 6), "int32"), "expects dtype float32; received int32"),
        (np.zeros((0, 6), "float32"), "empty batch"),
    ],
)
def test_inputs_that_do_not_fit_are_refused_with_expected_and_received(x: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        CaptureEngine(sequential()).capture({"x": x}, Selection())


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(InvalidInput, match="Expected kinds among"):
        Selection(kinds=frozenset({"gradients"}))


def test_a_model_built_with_dict_inputs_gets_them_by_name() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    keras.utils.set_random_seed(4)
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    merged = keras.layers.Concatenate(name="merge")([a, b])
    model = keras.Model({"b": b, "a": a}, keras.layers.Dense(1, name="out")(merged))
    x = {"a": rng.normal(size=(2, 2)).astype("float32"), "b": rng.normal(size=(2, 3)).astype("float32")}
    result = CaptureEngine(model).capture(x, ALL)
    np.testing.assert_allclose(result.tensors["merge"]["activation"], np.concatenate([x["a"], x["b"]], axis=1))


class Residual(keras.Model):
    """A subclassed model: layers in attributes, the graph only in `call`."""

    def __init__(self) -> None:
        super().__init__(name="residual")
        self.expand = keras.layers.Dense(4, activation="relu", name="expand")
        self.project = keras.layers.Dense(4, name="project")

    def call(self, x):  # type: ignore[no-untyped-def, override]
        return x + self.project(self.expand(x))


def test_a_subclassed_model_is_captured_through_its_call() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    keras.utils.set_random_seed(5)
    model = Residual()
    x = rng.normal(size=(3, 4)).astype("float32")
    expected = model(x)
    engine = CaptureEngine(model)
    assert [s.shape for s in engine.inputs] == [(None, 4)]
    result = engine.capture({"input": x}, ALL)
    np.testing.assert_allclose(result.tensors["expand"]["activation"], model.expand(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.tensors["project"]["input"], model.expand(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.outputs["output_0"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 3.5, 1e20])
def test_a_constant_tensor_has_a_histogram_in_one_bin_on_device_and_in_numpy(value: float) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Activation("linear", name="id")])
    x = np.full((2, 3), value, "float32")
    device = CaptureEngine(model).capture({"x": x}, Selection()).summaries["id"]["activation"]
    host = summarize(x)
    assert device.histogram == host.histogram and device.histogram[0] == 6
    assert device.histogram_range[0] == host.histogram_range[0] == np.float32(value)
    assert device.histogram_range[1] > device.histogram_range[0]


def test_the_flat_call_answers_what_the_public_call_answers_with_and_without_targets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine calls its traced functions through `_call` (flat tensors, no signature binding per call);
    the public call on the same arrays must give the same outputs, summaries and gradients, and a function
    without the private method takes the public path."""
    from layerscope.service.capture import engine as engine_module

    rng = np.random.default_rng(9)
    model = shared_and_multi_io()
    engine = CaptureEngine(model)
    x = {"a": rng.normal(size=(3, 4)).astype("float32"), "b": rng.normal(size=(3, 4)).astype("float32")}
    y = {"score": rng.normal(size=(3, 1)).astype("float32"), "aux": rng.normal(size=(3, 2)).astype("float32")}
    gradients = Selection(kinds=frozenset({"activation", "gradient"}), full=("*",))
    flat = (engine.predict(x), engine.capture(x, gradients, targets=y, loss="mse"))

    class PublicOnly:  # what a TensorFlow without `_call_flat` would hand the engine
        def __init__(self, function: object) -> None:
            self.function = function

        def __call__(self, *groups: object) -> object:
            return self.function(*groups)  # type: ignore[operator]

    original = engine_module._call
    monkeypatch.setattr(engine_module, "_call", lambda function, *groups: original(PublicOnly(function), *groups))
    public = (engine.predict(x), engine.capture(x, gradients, targets=y, loss="mse"))
    for name in flat[0]:
        np.testing.assert_array_equal(flat[0][name], public[0][name])
    assert flat[1].summaries == public[1].summaries
    for layer, kinds in flat[1].tensors.items():
        for kind, tensor in kinds.items():
            np.testing.assert_array_equal(tensor, public[1].tensors[layer][kind])
