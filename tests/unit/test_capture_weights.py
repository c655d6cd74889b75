"""Every weight of every layer is captured under its own name, wrappers and composite layers included."""

from __future__ import annotations

import keras
import numpy as np

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.capture.weights import named_weights
from layerscope.service.domain.selection import Selection

WEIGHTS = Selection(layers=("*",), kinds=frozenset({"kernel", "bias", "other"}), full=("*",))


def text_model() -> keras.Model:
    """Keras-example style: embedding, bidirectional LSTM, time-distributed dense, attention, batch norm."""
    keras.utils.set_random_seed(4)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 4, name="embed")(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True, name="lstm"), name="bi")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(4), name="td")(x)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, name="attn")(x, x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(tokens, keras.layers.GlobalAveragePooling1D(name="pool")(x), name="text")


def test_bidirectional_lstm_keeps_forward_and_backward_weights_apart() -> None:
    model = text_model()
    result = CaptureEngine(model).capture({"tokens": np.zeros((2, 6), "int32")}, WEIGHTS)

    bi = model.get_layer("bi")
    assert set(result.tensors["bi"]) == {
        "forward_lstm/kernel",
        "forward_lstm/recurrent_kernel",
        "forward_lstm/bias",
        "backward_lstm/kernel",
        "backward_lstm/recurrent_kernel",
        "backward_lstm/bias",
    }
    forward, backward = bi.forward_layer.cell, bi.backward_layer.cell
    np.testing.assert_array_equal(result.tensors["bi"]["forward_lstm/kernel"], forward.kernel.numpy())
    np.testing.assert_array_equal(result.tensors["bi"]["backward_lstm/kernel"], backward.kernel.numpy())
    assert not np.array_equal(forward.kernel.numpy(), backward.kernel.numpy())
    assert result.summaries["bi"]["forward_lstm/bias"].count == forward.bias.numpy().size


def test_every_variable_of_every_layer_is_reachable_and_its_values_match() -> None:
    model = text_model()
    result = CaptureEngine(model).capture({"tokens": np.ones((2, 6), "int32")}, WEIGHTS)

    captured = sum(len(kinds) for kinds in result.tensors.values())
    assert captured == len(model.weights)
    for layer in model.layers:
        for name, variable in named_weights(layer).items():
            np.testing.assert_array_equal(result.tensors[layer.name][name], variable.numpy())


def test_unique_names_stay_short_and_repeated_roles_name_their_owner() -> None:
    model = text_model()
    assert set(result_kinds(model, "embed")) == {"embeddings"}
    assert set(result_kinds(model, "td")) == {"kernel", "bias"}
    assert set(result_kinds(model, "bn")) == {"gamma", "beta", "moving_mean", "moving_variance"}
    assert "query/kernel" in result_kinds(model, "attn")
    assert "attention_output/bias" in result_kinds(model, "attn")


def result_kinds(model: keras.Model, layer: str) -> list[str]:
    return list(named_weights(model.get_layer(layer)))


def test_kinds_select_by_role_the_last_part_of_the_name() -> None:
    model = text_model()
    only_bias = Selection(layers=("bi", "bn", "embed"), kinds=frozenset({"bias"}))
    result = CaptureEngine(model).capture({"tokens": np.zeros((1, 6), "int32")}, only_bias)
    assert set(result.summaries["bi"]) == {"forward_lstm/bias", "backward_lstm/bias"}
    assert "bn" not in result.summaries and "embed" not in result.summaries  # gamma, embeddings: "other"

    other = Selection(layers=("bn", "embed"), kinds=frozenset({"other"}))
    result = CaptureEngine(model).capture({"tokens": np.zeros((1, 6), "int32")}, other)
    assert set(result.summaries["embed"]) == {"embeddings"}
    assert set(result.summaries["bn"]) == {"gamma", "beta", "moving_mean", "moving_variance"}
