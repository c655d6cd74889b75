"""dense-on-spatial at rank 3: the evidence numbers, the remedy's pooling dimension and the thresholds."""

from __future__ import annotations

from collections.abc import Callable

import keras
import pytest

from layerscope.service.diagnosis.rules.dense_on_spatial import DenseOnSpatial
from layerscope.service.models.describe import describe
from tests.diagnosis import zoo


def test_conv1d_pool_dense_reports_rank_three_with_its_numbers() -> None:
    (finding,) = DenseOnSpatial().check(describe(zoo.sequential_conv1d_pool_then_dense()), None)
    assert finding.layers == ("hidden",)
    assert "expected rank 2 after Flatten or global pooling, received rank 3" in finding.message
    assert finding.evidence["input_rank"] == 3
    assert finding.evidence["input_shape"] == [None, 15, 8]
    assert finding.evidence["source"] == "MaxPooling1D 'pool'"
    assert finding.evidence["source_shape"] == [None, 15, 8]
    assert "GlobalAveragePooling1D()" in finding.suggestion and "'hidden'" in finding.suggestion


def test_reshaped_map_names_the_conv_and_its_map() -> None:
    (finding,) = DenseOnSpatial().check(describe(zoo.functional_conv2d_reshape_dense()), None)
    assert finding.evidence["input_shape"] == [None, 36, 4]
    assert finding.evidence["source_shape"] == [None, 6, 6, 4]
    assert "GlobalAveragePooling2D()" in finding.suggestion and "Conv2D 'conv'" in finding.suggestion


def test_only_the_first_dense_on_the_map_is_reported() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.Dense(8, activation="relu", name="first"),
            keras.layers.Dense(2, name="second"),
        ]
    )
    assert [f.layers for f in DenseOnSpatial().check(describe(model), None)] == [("first",)]


def test_dense_straight_on_an_image_input_fires_but_not_on_a_rank_three_input() -> None:
    image = keras.Input((8, 8, 3), name="image")
    on_image = keras.Model(image, keras.layers.Dense(2, name="head")(image))
    (finding,) = DenseOnSpatial().check(describe(on_image), None)
    assert finding.evidence["source"] == "image input 'image'"
    assert DenseOnSpatial().check(describe(zoo.sequence_dense_per_step()), None) == []


@pytest.mark.parametrize(
    "build", [zoo.sequential_conv1d_pool_then_dense, zoo.functional_conv2d_reshape_dense], ids=lambda b: b.__name__
)
def test_min_rank_four_keeps_rank_three_maps_quiet(build: Callable[[], keras.Model]) -> None:
    assert DenseOnSpatial(min_rank=4).check(describe(build()), None) == []
    assert DenseOnSpatial(min_rank=4).check(describe(zoo.cnn_dense_on_conv()), None)


def test_thresholds_are_checked_and_round_trip() -> None:
    rule = DenseOnSpatial(min_rank=4, min_image_rank=5)
    assert rule.get_config() == {"min_rank": 4, "min_image_rank": 5}
    assert DenseOnSpatial.from_config(rule.get_config()).get_config() == rule.get_config()
    with pytest.raises(ValueError, match="min_rank"):
        DenseOnSpatial(min_rank=2)
    with pytest.raises(ValueError, match="min_image_rank"):
        DenseOnSpatial(min_image_rank=2)


def test_the_finding_names_the_output_the_unreduced_map_reaches() -> None:
    (finding,) = DenseOnSpatial().check(describe(zoo.pointwise_dense_two_heads()), None)
    assert finding.layers == ("features",)
    assert finding.evidence["output"] == "boxes"
    assert finding.evidence["output_shape"] == [None, 6, 6, 4]
    assert "reaches output 'boxes' as (None, 6, 6, 4) without being reduced" in finding.message
    (head,) = DenseOnSpatial().check(describe(zoo.cnn_dense_on_conv()), None)
    assert head.evidence["output"] == "head" and head.evidence["output_shape"] == [None, 6, 6, 3]


@pytest.mark.parametrize(
    "build",
    [zoo.convnext_like_block, zoo.mlp_mixer_like, zoo.conv_layernorm_dense, zoo.sequential_dense_after_pool],
    ids=lambda b: b.__name__,
)
def test_a_pointwise_dense_reduced_before_every_output_is_left_alone(build: Callable[[], keras.Model]) -> None:
    assert DenseOnSpatial().check(describe(build()), None) == []


def reduced_by(reduction: keras.layers.Layer) -> keras.Model:
    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.Dense(8, activation="relu", name="pointwise")(x)
    x = keras.layers.Conv2D(8, 1, activation="relu", name="mix")(x)  # the walk forward goes through convs
    return keras.Model(image, keras.layers.Dense(2, name="out")(reduction(x)))


@pytest.mark.parametrize(
    "reduction",
    [
        lambda: keras.layers.Reshape((128,)),
        lambda: keras.layers.Flatten(),
        lambda: keras.layers.GlobalMaxPooling2D(),
        lambda: keras.layers.GlobalAveragePooling2D(keepdims=True),
    ],
    ids=["reshape_to_rank_2", "flatten", "global_max_pooling", "global_pooling_keepdims"],
)
def test_reshape_to_rank_two_flatten_and_global_pooling_all_reduce(reduction: Callable[[], keras.layers.Layer]) -> None:
    assert DenseOnSpatial().check(describe(reduced_by(reduction())), None) == []


def test_without_the_reduction_the_same_map_fires() -> None:
    findings = DenseOnSpatial().check(describe(reduced_by(keras.layers.Identity())), None)
    assert [f.layers for f in findings] == [("pointwise",), ("out",)]  # 'out' reads the map of the conv 'mix'
    for finding in findings:
        assert finding.evidence["output"] == "out" and finding.evidence["output_shape"] == [None, 4, 4, 2]


def test_a_map_read_as_a_sequence_by_a_recurrent_layer_is_reduced() -> None:
    """A CRNN (the Keras OCR example): conv map reshaped to columns, a Dense per column, then a
    bidirectional LSTM tagging each step; the Dense feeds a sequence model on purpose."""
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
    x = keras.layers.Reshape((16, 32), name="columns")(x)
    x = keras.layers.Dense(8, activation="relu", name="per_column")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="rnn")(x)
    model = keras.Model(image, keras.layers.Dense(5, activation="softmax", name="chars")(x))
    assert DenseOnSpatial().check(describe(model), None) == []
