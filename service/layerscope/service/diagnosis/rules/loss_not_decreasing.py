from __future__ import annotations

import math

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_count, check_fraction
from layerscope.service.diagnosis.rules.outputs import output_layers
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class LossNotDecreasing(TrainingRule):
    """The loss does not go down over the probe on a batch the model could fit.

    Symptom: a few optimizer steps on one small batch should always lower the loss; when they do not,
    the gradient does not reach the weights (dead or saturated units, an output that cannot move, a
    softmax over one unit), the learning rate is far too small, or the loss does not fit the labels.
    Remedy: check the output activation against the loss and the targets, the learning rate, and the
    dead/saturated fractions and gradient norms of the probe's steps.
    """

    code = "loss-not-decreasing"
    severity = Severity.WARNING

    def __init__(self, min_relative_decrease: float = 1e-3, min_steps: int = 2, min_loss: float = 1e-6) -> None:
        self.min_relative_decrease = check_fraction("min_relative_decrease", min_relative_decrease)
        self.min_steps = check_count("min_steps", min_steps, 1)
        self.min_loss = check_fraction("min_loss", min_loss)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        probe = training.probe
        if probe is None or len(probe.steps) - 1 < self.min_steps:
            return []
        first, last = probe.steps[0].loss, probe.steps[-1].loss
        later = [s.loss for s in probe.steps[1:]]
        if not all(math.isfinite(v) for v in [first, *later]) or first <= self.min_loss:
            return []  # non-finite: exploding-gradients; a loss of ~0 has nothing left to lose
        # Judged on the best later loss, not the last: each step's loss is measured in training mode, where
        # dropout makes it noisy, and a model that learns gets below its first loss at some step. Reported on
        # the last, which is where the probe ended (never a larger decrease than the best's, so below the bound).
        if (first - min(later)) / first >= self.min_relative_decrease:
            return []
        decrease = (first - last) / first
        layers = [layer.name for layer in output_layers(description)]
        norms = probe.steps[0].gradient_norms
        rose = last > first
        return [
            self.finding(
                layers,
                f"Over {len(probe.steps) - 1} probe steps of {probe.optimizer} the loss ({probe.loss}) of "
                f"{', '.join(repr(name) for name in layers)} went from "
                f"{first:.4g} to {last:.4g} (best {min(later):.4g}); expected a decrease of at least "
                f"{self.min_relative_decrease:.2%}, received {decrease:.2%}.",
                (
                    "The loss rose: lower the learning rate (10x at a time) or clip gradients (clipnorm=1.0), and "
                    "check that the output activation fits the loss and the targets."
                    if rose
                    else "Check that the output activation fits the loss and the targets, that gradients reach the "
                    "weights (gradient norms, dead units), and that the learning rate is not far too small."
                ),
                {
                    "losses": [s.loss for s in probe.steps],
                    "relative_decrease": decrease,
                    "best_relative_decrease": (first - min(later)) / first,
                    "optimizer": probe.optimizer,
                    "gradient_norm_total": math.sqrt(sum(v * v for v in norms.values())),
                },
            )
        ]
