"""One rule per finding code of the contract (`layerscope audit --explain CODE` prints each).

`RULE_CLASSES` lists them all: static, runtime, then the training rules, which need targets (the
static bounded-output-regression first among them).
"""

from __future__ import annotations

from layerscope.service.diagnosis.rules.base import Rule, RuntimeRule, StaticRule, TrainingRule
from layerscope.service.diagnosis.rules.bias_before_batchnorm import BiasBeforeBatchNorm
from layerscope.service.diagnosis.rules.bounded_output_regression import BoundedOutputRegression
from layerscope.service.diagnosis.rules.cnn_design_smell import CnnDesignSmell
from layerscope.service.diagnosis.rules.constant_init import ConstantInit
from layerscope.service.diagnosis.rules.constant_output import ConstantOutput
from layerscope.service.diagnosis.rules.conv_after_flatten import ConvAfterFlatten
from layerscope.service.diagnosis.rules.dead_units import DeadUnits
from layerscope.service.diagnosis.rules.dead_weights import DeadWeights
from layerscope.service.diagnosis.rules.dense_on_spatial import DenseOnSpatial
from layerscope.service.diagnosis.rules.dropout_placement import DropoutPlacement
from layerscope.service.diagnosis.rules.exploding_activations import ExplodingActivations
from layerscope.service.diagnosis.rules.exploding_gradients import ExplodingGradients
from layerscope.service.diagnosis.rules.feature_map_too_small import FeatureMapTooSmall
from layerscope.service.diagnosis.rules.image_without_conv import ImageWithoutConv
from layerscope.service.diagnosis.rules.loss_not_decreasing import LossNotDecreasing
from layerscope.service.diagnosis.rules.missing_nonlinearity import MissingNonlinearity
from layerscope.service.diagnosis.rules.non_finite import NonFinite
from layerscope.service.diagnosis.rules.output_loss_mismatch import OutputLossMismatch
from layerscope.service.diagnosis.rules.output_range_mismatch import OutputRangeMismatch
from layerscope.service.diagnosis.rules.parameter_explosion import ParameterExplosion
from layerscope.service.diagnosis.rules.redundant_activation import RedundantActivation
from layerscope.service.diagnosis.rules.saturated_units import SaturatedUnits
from layerscope.service.diagnosis.rules.saturating_deep_stack import SaturatingDeepStack
from layerscope.service.diagnosis.rules.softmax_single_unit import SoftmaxSingleUnit
from layerscope.service.diagnosis.rules.target_loss_mismatch import TargetLossMismatch
from layerscope.service.diagnosis.rules.units_die_in_training import UnitsDieInTraining
from layerscope.service.diagnosis.rules.unscaled_input import UnscaledInput
from layerscope.service.diagnosis.rules.vanishing_activations import VanishingActivations
from layerscope.service.diagnosis.rules.vanishing_gradients import VanishingGradients

RULE_CLASSES: tuple[type[Rule], ...] = (
    SoftmaxSingleUnit,
    OutputLossMismatch,
    DenseOnSpatial,
    ImageWithoutConv,
    ConvAfterFlatten,
    ParameterExplosion,
    MissingNonlinearity,
    RedundantActivation,
    SaturatingDeepStack,
    ConstantInit,
    BiasBeforeBatchNorm,
    DropoutPlacement,
    FeatureMapTooSmall,
    CnnDesignSmell,
    NonFinite,
    DeadUnits,
    SaturatedUnits,
    ExplodingActivations,
    VanishingActivations,
    ConstantOutput,
    UnscaledInput,
    DeadWeights,
    BoundedOutputRegression,
    VanishingGradients,
    ExplodingGradients,
    LossNotDecreasing,
    UnitsDieInTraining,
    OutputRangeMismatch,
    TargetLossMismatch,
)


def default_rules() -> list[Rule]:
    """One instance of every rule with its default thresholds."""
    return [cls() for cls in RULE_CLASSES]


__all__ = [
    "RULE_CLASSES",
    "Rule",
    "RuntimeRule",
    "StaticRule",
    "TrainingRule",
    "default_rules",
    *(c.__name__ for c in RULE_CLASSES),
]
