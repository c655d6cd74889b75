"""Keras loss objects from loss names (domain/training.py): the only place a loss becomes code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from layerscope.service.domain.training import LossSpec

_CLASSES: dict[str, Callable[..., Any]] = {
    "binary_crossentropy": keras.losses.BinaryCrossentropy,
    "binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
    "categorical_focal_crossentropy": keras.losses.CategoricalFocalCrossentropy,
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_hinge": keras.losses.CategoricalHinge,
    "hinge": keras.losses.Hinge,
    "squared_hinge": keras.losses.SquaredHinge,
    "kl_divergence": keras.losses.KLDivergence,
    "poisson": keras.losses.Poisson,
    "cosine_similarity": keras.losses.CosineSimilarity,
    "mean_squared_error": keras.losses.MeanSquaredError,
    "mean_absolute_error": keras.losses.MeanAbsoluteError,
    "mean_absolute_percentage_error": keras.losses.MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": keras.losses.MeanSquaredLogarithmicError,
    "huber": keras.losses.Huber,
    "log_cosh": keras.losses.LogCosh,
}
_TAKE_LOGITS = frozenset(n for n in _CLASSES if "crossentropy" in n)


def build_loss(specs: Sequence[LossSpec]) -> Callable[[list[tf.Tensor], list[tf.Tensor]], tf.Tensor]:
    """The total loss over every output (the sum of each output's loss, as Keras sums unweighted losses)."""
    objects = [
        _CLASSES[s.name](from_logits=True) if s.from_logits and s.name in _TAKE_LOGITS else _CLASSES[s.name]()
        for s in specs
    ]

    def total(ys: list[tf.Tensor], outputs: list[tf.Tensor]) -> tf.Tensor:
        parts = [fn(y, tf.cast(out, tf.float32)) for fn, y, out in zip(objects, ys, outputs, strict=True)]
        return tf.add_n(parts)

    return total
