from __future__ import annotations

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class TargetLossMismatch(TrainingRule):
    """The targets do not fit the loss and the output: a width other than the output's, one-hot rows for a
    sparse (class-id) loss, class ids for a one-hot loss, or ids outside the output's classes.

    Symptom: the loss cannot be computed (Keras fails with a shape error), or worse it is computed on the
    wrong thing: a (batch, 1) target broadcast across ten units trains every unit toward the same value, and
    a one-hot row read as class ids scores nothing the model predicts. No gradient or training probe means
    anything until the targets fit, so none is computed.
    Remedy: give y the output's shape for one-hot, probability and regression losses; for class ids (one
    integer per row in [0, classes)) use sparse_categorical_crossentropy, for one-hot rows
    categorical_crossentropy (or send y.argmax(-1)).
    """

    code = "target-loss-mismatch"
    severity = Severity.ERROR

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        findings = []
        layers = list(description.outputs)
        for i, ((name, target), loss) in enumerate(zip(training.targets.items(), training.losses, strict=False)):
            mismatch = target.mismatch(loss)
            if mismatch is None:
                continue
            expected, received = mismatch
            layer = layers[i] if len(layers) == len(training.targets) else name
            of = f"output '{name}'" if layer == name else f"output '{name}' (layer '{layer}')"
            findings.append(
                self.finding(
                    [layer],
                    f"Targets for {of} of shape {_shape(target.output_shape or ())} under loss {loss.name}: "
                    f"expected {expected}; received {received}.",
                    "Give y the output's shape for one-hot, probability and regression losses; for class ids use "
                    "sparse_categorical_crossentropy, for one-hot rows categorical_crossentropy.",
                    {
                        "output": name,
                        "loss": loss.name,
                        "output_shape": list(target.output_shape or ()),
                        "target_shape": list(target.shape),
                        "target_min": target.summary.min,
                        "target_max": target.summary.max,
                        "integral": target.integral,
                    },
                )
            )
        return findings


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
