"""describe(): paths, inbound names across nested models, shapes, weights and the compile config."""

from __future__ import annotations

import json

import keras
import numpy as np

from layerscope.service.models.describe import describe, identical_units

L = keras.layers


def test_sequential_chain_shapes_weights_and_compile_config() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            L.Dense(3, kernel_initializer="ones", name="a"),
            L.BatchNormalization(name="bn"),
            L.Dense(2, name="b"),
        ],
        name="chain",
    )
    model.compile(optimizer="adam", loss="mse")
    d = describe(model, model.get_compile_config(), name="renamed")
    assert d.name == "renamed"
    assert [layer.name for layer in d.layers] == ["a", "bn", "b"]
    assert [layer.inbound for layer in d.layers] == [(), ("a",), ("bn",)]
    assert d.layer("a").input_shapes == ((None, 5),) and d.layer("a").output_shapes == ((None, 3),)
    assert d.outputs == ("b",)
    assert d.inputs[0].shape == (None, 5) and d.inputs[0].dtype == "float32"
    assert d.parameters == model.count_params() == sum(layer.parameters for layer in d.layers)
    assert d.compile_config is not None and d.compile_config["loss"] == "mse"
    kernel, bias = d.layer("a").weights
    assert (kernel.kind, kernel.shape, kernel.identical_units) == ("kernel", (5, 3), True)
    assert (bias.kind, bias.summary.max) == ("bias", 0.0)
    assert [w.kind for w in d.layer("bn").weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert d.layer("b").weights[0].identical_units is False
    json.dumps([dict(layer.config) for layer in d.layers])  # configs are JSON data


def test_functional_shared_layer_and_multiple_outputs() -> None:
    keras.utils.set_random_seed(0)
    left, right = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    shared = L.Dense(3, activation="relu", name="shared")
    merged = L.Concatenate(name="concat")([shared(left), shared(right)])
    score = L.Dense(1, activation="sigmoid", name="score")(merged)
    aux = L.Dense(2, name="aux")(merged)
    d = describe(keras.Model([left, right], [score, aux], name="siamese"))
    assert [layer.name for layer in d.layers] == ["shared", "concat", "score", "aux"]
    assert d.layer("shared").inbound == ()  # fed by model inputs only: InputLayers are not layers here
    assert d.layer("concat").inbound == ("shared",)
    assert d.layer("concat").input_shapes == ((None, 3), (None, 3))
    assert d.outputs == ("score", "aux")
    assert [spec.name for spec in d.inputs] == ["left", "right"]


def test_nested_models_two_levels_deep() -> None:
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([L.Dense(3, name="i1"), L.ReLU(name="r")], name="inner")
    mid_in = keras.Input((4,), name="mid_in")
    mid = keras.Model(mid_in, L.Dense(2, name="m2")(inner(mid_in)), name="mid")
    x = keras.Input((4,), name="x")
    pre = L.Dense(4, name="pre")(x)
    model = keras.Model(x, L.Dense(1, name="head")(mid(pre)), name="outer")
    d = describe(model)
    inbound = {layer.name: layer.inbound for layer in d.layers}
    assert inbound == {
        "pre": (),
        "mid": ("pre",),
        "mid/inner": ("pre",),
        "mid/inner/i1": ("pre",),
        "mid/inner/r": ("mid/inner/i1",),
        "mid/m2": ("mid/inner/r",),
        "head": ("mid/m2",),
    }
    parents = {layer.name: layer.parent for layer in d.layers}
    assert parents["mid/inner/r"] == "mid/inner" and parents["mid/m2"] == "mid" and parents["head"] is None
    assert d.layer("mid").weights == () and d.layer("mid").parameters == (4 * 3 + 3) + (
        3 * 2 + 2
    )  # includes its inner layers
    assert "layers" not in d.layer("mid").config
    assert d.outputs == ("head",)
    assert d.parameters == model.count_params()


def test_nested_model_as_the_output_resolves_to_its_inner_layer() -> None:
    keras.utils.set_random_seed(0)
    features = keras.Input((6,), name="features")
    head = keras.Model(features, L.Dense(2, activation="softmax", name="probs")(features), name="head")
    x = keras.Input((4,), name="x")
    d = describe(keras.Model(x, head(L.Dense(6, name="trunk")(x))))
    assert d.outputs == ("head/probs",)
    assert d.layer("head/probs").inbound == ("trunk",)


def test_operations_without_a_layer_keep_the_graph_connected() -> None:
    """`conv + image` is a keras.ops Add, not a layer: it is an entry, and the Dense after it is fed by it."""
    image = keras.Input((4, 4, 3), name="image")
    conv = L.Conv2D(3, 1, name="conv")(image)
    residual = conv + image
    model = keras.Model(image, L.Dense(2, name="head")(residual[..., :2]))
    d = describe(model)
    add = next(layer for layer in d.layers if layer.class_name == "Add")
    sliced = next(layer for layer in d.layers if layer.inbound == (add.name,))
    assert add.inbound == ("conv",)  # the model input is not a layer
    assert add.output_shapes == ((None, 4, 4, 3),) and add.weights == () and add.parameters == 0
    assert d.layer("head").inbound == (sliced.name,)
    assert [layer.name for layer in d.layers if layer.weights] == ["conv", "head"]


def test_identical_units() -> None:
    assert identical_units(np.ones((3, 4)))
    assert identical_units(np.tile(np.arange(9.0).reshape(3, 3, 1, 1), (1, 1, 1, 5)))
    assert not identical_units(np.ones((3, 1)))  # one unit: nothing to be symmetric with
    assert not identical_units(np.arange(12.0).reshape(3, 4))
    assert not identical_units(np.ones(4))


def test_applications_describe_fully() -> None:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35)
    d = describe(model)
    assert len(d.layers) == len(model.layers) - 1
    assert d.outputs == ("predictions",)
    add = d.layer("block_2_add")
    assert set(add.inbound) == {"block_1_project_BN", "block_2_project_BN"}
    assert d.parameters == model.count_params()
    keras.backend.clear_session()
