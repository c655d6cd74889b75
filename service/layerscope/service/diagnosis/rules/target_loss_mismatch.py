from __future__ import annotations

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_at_least
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.targets import mismatched_targets


class TargetLossMismatch(TrainingRule):
    """The targets do not fit the loss: one-hot rows with a sparse loss, integer labels with a categorical
    loss, or a width or class count other than the output's.

    Symptom: the most common label bug. Keras cannot compute the loss at all (a shape error at the first
    training step), or, where the shapes happen to broadcast, computes a different one than meant: each
    of ten outputs compared with one label, labels past the last class, fractional "class indices".
    Remedy: make the targets match the loss: class indices (y.argmax(axis=-1)) for
    sparse_categorical_crossentropy, one-hot rows (keras.utils.to_categorical) for categorical_crossentropy,
    and as many output units as there are classes or target columns.
    """

    code = "target-loss-mismatch"
    severity = Severity.ERROR

    def __init__(self, tolerance: float = 1e-6) -> None:
        self.tolerance = check_at_least("tolerance", tolerance, 0.0)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        found = mismatched_targets(training.outputs, training.losses, training.targets, self.tolerance)
        findings = []
        for i, spec in enumerate(training.outputs):
            mismatch = found.get(spec.name)
            if mismatch is None:
                continue
            layer = description.outputs[i] if i < len(description.outputs) else spec.name
            findings.append(
                self.finding(
                    [layer],
                    mismatch.sentence(spec.name),
                    mismatch.fix,
                    {
                        "mismatch": mismatch.kind,
                        "loss": mismatch.loss,
                        "output_shape": list(spec.shape),
                        "target_shape": list(training.targets[spec.name].shape),
                        "target_min": training.targets[spec.name].summary.min,
                        "target_max": training.targets[spec.name].summary.max,
                    },
                )
            )
        return findings
