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
