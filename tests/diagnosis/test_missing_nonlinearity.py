"""missing-nonlinearity: per-sample normalisations break the linear chain, BatchNormalization does not, and
each deliberate linear pair (pointwise bottleneck, residual stream, separable pair) has its own switch."""

from __future__ import annotations

from collections.abc import Callable

import keras
import pytest

from layerscope.service.diagnosis.rules.missing_nonlinearity import MissingNonlinearity
from layerscope.service.models.describe import describe
from tests.diagnosis import zoo


def conv_norm_conv(norm: Callable[[], keras.layers.Layer]) -> keras.Model:
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(8, 3, name="first")(image)
    x = norm()(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="second")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, keras.layers.Dense(2, name="out")(x))


@pytest.mark.parametrize(
    "norm",
    [
        keras.layers.LayerNormalization,
        lambda: keras.layers.GroupNormalization(groups=2),
        keras.layers.UnitNormalization,
    ],
    ids=["layer", "group", "unit"],
)
def test_per_sample_normalisations_count_as_a_nonlinearity(norm: Callable[[], keras.layers.Layer]) -> None:
    assert MissingNonlinearity().check(describe(conv_norm_conv(norm)), None) == []


def test_batch_normalisation_is_affine_and_stays_transparent() -> None:
    (finding,) = MissingNonlinearity().check(describe(conv_norm_conv(keras.layers.BatchNormalization)), None)
    assert finding.layers == ("first", "second")
    assert finding.evidence["first"] == "first" and finding.evidence["second"] == "second"


@pytest.mark.parametrize(
    ("switch", "build", "pair"),
    [
        ("allow_residual_stream", zoo.preactivation_residual_stream, ("down", "branch_a")),
        ("allow_separable", zoo.separable_pair, ("depthwise", "pointwise")),
        ("allow_pointwise_bottleneck", zoo.pointwise_linear_bottleneck, ("project", "expand")),
    ],
)
def test_each_exemption_is_what_keeps_its_model_quiet(
    switch: str, build: Callable[[], keras.Model], pair: tuple[str, str]
) -> None:
    description = describe(build())
    assert MissingNonlinearity().check(description, None) == []
    findings = MissingNonlinearity(**{switch: False}).check(description, None)
    assert [f.layers for f in findings] == [pair]
    assert findings[0].evidence["rule"][switch] is False


def test_convnext_like_block_is_quiet_for_three_reasons() -> None:
    """Depthwise conv -> LayerNormalization -> Dense is broken by the LayerNormalization whatever the
    switches; the down-sampling conv -> depthwise conv pair is both a residual stream and separable."""
    description = describe(zoo.convnext_like_block())
    assert MissingNonlinearity().check(description, None) == []
    assert MissingNonlinearity(allow_residual_stream=False).check(description, None) == []
    assert MissingNonlinearity(allow_separable=False).check(description, None) == []
    strict = MissingNonlinearity(allow_residual_stream=False, allow_separable=False)
    assert [f.layers for f in strict.check(description, None)] == [("down1", "block1_dwconv")]


def test_a_conv_with_groups_equal_to_its_channels_is_depthwise() -> None:
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 4), name="image")
    x = keras.layers.Conv2D(8, 1, activation="relu", name="stem")(image)
    x = keras.layers.Conv2D(8, 3, groups=8, name="depthwise")(x)
    grouped = keras.layers.Conv2D(8, 3, groups=2, name="grouped")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="dense_conv")(grouped)
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    # depthwise -> grouped is separable; grouped (groups=2 of 8 channels mixes channels) -> dense_conv is not
    assert [f.layers for f in MissingNonlinearity().check(describe(model), None)] == [("grouped", "dense_conv")]


def test_switches_are_checked_and_round_trip() -> None:
    rule = MissingNonlinearity(allow_pointwise_bottleneck=False, allow_residual_stream=False, allow_separable=True)
    assert rule.get_config() == {
        "allow_pointwise_bottleneck": False,
        "allow_residual_stream": False,
        "allow_separable": True,
    }
    assert MissingNonlinearity.from_config(rule.get_config()).get_config() == rule.get_config()
    with pytest.raises(ValueError, match="allow_residual_stream"):
        MissingNonlinearity(allow_residual_stream=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allow_separable"):
        MissingNonlinearity(allow_separable="yes")  # type: ignore[arg-type]
