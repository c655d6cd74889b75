"""Whether an output's targets fit the loss it is trained with, as data.

The most common label bug: one-hot rows under a sparse loss, class indices under a categorical loss, or
targets of another width than the output. Keras cannot even compute such a loss (or, where shapes happen
to broadcast, computes the wrong one), so one check serves three places: the `target-loss-mismatch` rule
reports it as a finding, a diagnosis with such targets skips the gradients and the probe, and a gradient
capture or probe is refused with the same words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from layerscope.service.domain.description import InputSpec, Shape
from layerscope.service.domain.training import INDEX_TARGET_LOSSES, ONE_HOT_TARGET_LOSSES, LossSpec, TargetInfo

DEFAULT_TOLERANCE = 1e-6
"""How far from a whole number a class index may lie (float labels written as 3.0000001 are still 3)."""


@dataclass(frozen=True)
class TargetMismatch:
    """How one output's targets fail its loss: `kind` names the case, `expected` and `received` say it in
    words (shapes with the caller's batch), `fix` says what to change."""

    kind: str
    """`one-hot-with-sparse-loss`, `labels-with-categorical-loss`, `class-count`, `fractional-labels`, `shape`."""
    loss: str
    expected: str
    received: str
    fix: str

    def sentence(self, output: str) -> str:
        return (
            f"The targets of output '{output}' do not fit its loss {self.loss}: expected {self.expected}; "
            f"received {self.received}."
        )


def target_mismatch(
    loss: str, output_shape: Shape, target: TargetInfo, tolerance: float = DEFAULT_TOLERANCE
) -> TargetMismatch | None:
    """None when the targets fit: class indices in [0, classes) for a sparse loss, rows as wide as the
    output for a categorical one, the output's shape for every other loss (Keras adds or drops one trailing
    axis of size 1 before comparing). An output of unknown class count is not judged."""
    output = tuple(output_shape[1:])
    received = tuple(target.shape[1:])
    batch = target.shape[0] if target.shape else 0
    if loss in INDEX_TARGET_LOSSES:
        return _class_indices(loss, output, received, batch, target, tolerance)
    if _aligned(received, output):
        return None
    classes = output[-1] if output else None
    index = output[:-1]
    labels = (_fits(received, index) or _fits(received, (*index, 1))) and target.fractional <= tolerance
    if loss in ONE_HOT_TARGET_LOSSES and classes is not None and classes > 1 and labels:
        s = target.summary
        return TargetMismatch(
            "labels-with-categorical-loss",
            loss,
            f"one-hot rows of shape {_shape(batch, output)}",
            f"integer labels of shape {target.shape} (class indices in [{s.min:g}, {s.max:g}])",
            f"One-hot encode the labels (keras.utils.to_categorical(y, {classes})), or train with "
            "sparse_categorical_crossentropy, which takes class indices.",
        )
    wide = "rows as wide as the output" if loss in ONE_HOT_TARGET_LOSSES else "the output's shape"
    return TargetMismatch(
        "shape",
        loss,
        f"targets of shape {_shape(batch, output)} ({wide})",
        f"targets of shape {target.shape}",
        f"Pass targets of shape {_shape(batch, output)}, or give the output the targets' width.",
    )


def mismatched_targets(
    outputs: Sequence[InputSpec],
    losses: Sequence[LossSpec],
    targets: Mapping[str, TargetInfo],
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, TargetMismatch]:
    """output name -> how its targets fail its loss, for every output whose targets do (in output order)."""
    found = {}
    for spec, loss in zip(outputs, losses, strict=False):
        target = targets.get(spec.name)
        mismatch = target_mismatch(loss.name, spec.shape, target, tolerance) if target is not None else None
        if mismatch is not None:
            found[spec.name] = mismatch
    return found


def _class_indices(
    loss: str, output: Shape, received: Shape, batch: int, target: TargetInfo, tolerance: float
) -> TargetMismatch | None:
    if not output or output[-1] is None:
        return None  # no known class axis
    classes = output[-1]
    index = output[:-1]
    expected_shape = f"{_shape(batch, index)} or {_shape(batch, (*index, 1))}"
    if _fits(received, index) or _fits(received, (*index, 1)):
        s = target.summary
        if s.count == s.non_finite:
            return None  # nothing but NaN/Inf: non-finite targets are another problem
        if target.fractional > tolerance:
            return TargetMismatch(
                "fractional-labels",
                loss,
                f"whole-number class indices in [0, {classes - 1}]",
                f"fractional values in [{s.min:g}, {s.max:g}] (up to {target.fractional:.3g} from a whole number)",
                "Pass class indices (integers) for a sparse loss; for soft or real-valued targets use "
                "categorical_crossentropy with one-hot rows, or a regression loss.",
            )
        if s.min < 0 or s.max > classes - 1 + tolerance:
            return TargetMismatch(
                "class-count",
                loss,
                f"class indices in [0, {classes - 1}] for the output's {classes} classes",
                f"labels in [{s.min:g}, {s.max:g}]",
                f"Give the output one unit per class ({max(int(s.max) + 1, classes)} for these labels), or map the "
                f"labels to 0..{classes - 1}.",
            )
        return None
    if target.one_hot and _fits(received, output):
        return TargetMismatch(
            "one-hot-with-sparse-loss",
            loss,
            f"class indices of shape {expected_shape}",
            f"one-hot rows of shape {target.shape}",
            "Pass the class indices (y.argmax(axis=-1)), or train with categorical_crossentropy, which takes "
            "one-hot rows.",
        )
    return TargetMismatch(
        "shape",
        loss,
        f"class indices of shape {expected_shape}",
        f"targets of shape {target.shape}",
        f"Pass one class index in [0, {classes - 1}] per example (per position for a sequence output).",
    )


def _fits(received: Shape, expected: Shape) -> bool:
    """Same rank, and every known dimension of `expected` equal."""
    return len(received) == len(expected) and all(e is None or e == r for e, r in zip(expected, received, strict=True))


def _aligned(received: Shape, output: Shape) -> bool:
    """Keras's rule before an element-wise loss: an extra trailing axis of size 1 on either side is dropped."""
    if _fits(received, output):
        return True
    if len(received) == len(output) + 1 and received[-1] == 1:
        return _fits(received[:-1], output)
    if len(output) == len(received) + 1 and output[-1] == 1:
        return _fits(received, output[:-1])
    return False


def _shape(batch: int, shape: Shape) -> tuple[int | None, ...]:
    return (batch, *shape)
