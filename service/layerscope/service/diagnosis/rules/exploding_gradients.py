from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_at_least
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.jsonable import JsonValue
from layerscope.service.domain.training import ProbeResult


class ExplodingGradients(TrainingRule):
    """Gradient norms or the loss grow by orders of magnitude, or turn non-finite, during the probe.

    Symptom: each update overshoots, the weights grow, and within a few steps the loss is NaN or Inf:
    a learning rate far too high for the loss's scale, unscaled targets under a squared error, or a deep
    stack without normalisation.
    Remedy: lower the learning rate (by 10x at a time), scale inputs and targets, clip gradients
    (clipnorm=1.0), or add BatchNormalization.
    """

    code = "exploding-gradients"
    severity = Severity.ERROR
    explains = frozenset({"loss-not-decreasing"})  # a diverging probe's loss does not go down either

    def __init__(self, max_growth: float = 100.0, min_loss_rise: float = 0.1) -> None:
        self.max_growth = check_at_least("max_growth", max_growth, 1.0)
        self.min_loss_rise = check_at_least("min_loss_rise", min_loss_rise, 0.0)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        non_finite = sorted(p for p, kinds in training.gradients.items() if any(s.non_finite for s in kinds.values()))
        if training.probe is None or not training.probe.steps:
            if not non_finite:
                return []
            return [self._finding(non_finite, "the gradients of the loss hold NaN or Inf", {"layers": non_finite})]
        return self._check_probe(training.probe)

    def _check_probe(self, probe: ProbeResult) -> list[Finding]:
        steps = probe.steps
        first = steps[0]
        bad_step = next((s for s in steps if not _finite(s.loss, s.gradient_norms.values())), None)
        if bad_step is not None:
            layers = sorted(k for k, v in bad_step.gradient_norms.items() if not math.isfinite(v)) or list(
                probe.learning_layers[-1:]
            )
            return [
                self._finding(
                    layers,
                    f"the loss or gradient norms turned non-finite at probe step {bad_step.step} "
                    f"(loss {bad_step.loss:g})",
                    {"step": bad_step.step, "loss": _json(bad_step.loss), "losses": [_json(s.loss) for s in steps]},
                )
            ]
        loss_growth = max(s.loss for s in steps) / first.loss if first.loss > 0 else 1.0
        growth = {
            layer: max(s.gradient_norms.get(layer, 0.0) for s in steps) / norm
            for layer, norm in first.gradient_norms.items()
            if norm > 0
        }
        # Gradients that grow while the loss falls are an optimizer leaving a flat start (Adam's normalised
        # steps on tiny gradients, say), not divergence: they count only when the loss rises too.
        rising = steps[-1].loss > first.loss * (1.0 + self.min_loss_rise)
        grown = sorted(layer for layer, g in growth.items() if g > self.max_growth) if rising else []
        if loss_growth <= self.max_growth and not grown:
            return []
        layers = grown or list(probe.learning_layers[-1:])
        most = max(growth.values(), default=1.0)
        return [
            self._finding(
                layers,
                f"over {len(steps) - 1} probe steps the loss grew {loss_growth:.3g}x and "
                + (
                    f"the gradient norm of {len(grown)} layer(s) more than {self.max_growth:g}x (at most {most:.3g}x)"
                    if grown
                    else f"the gradient norms at most {most:.3g}x"
                ),
                {
                    "loss_growth": loss_growth,
                    "gradient_growth": {k: growth[k] for k in grown},
                    "losses": [s.loss for s in steps],
                    "optimizer": probe.optimizer,
                },
            )
        ]

    def _finding(self, layers: list[str], what: str, numbers: Mapping[str, JsonValue]) -> Finding:
        return self.finding(
            layers,
            f"Training diverges at {', '.join(repr(name) for name in layers)}: {what}; "
            f"expected the loss and gradient norms to stay finite and within "
            f"{self.max_growth:g}x of their first value, received the divergence above.",
            "Lower the learning rate (10x at a time), scale inputs and targets, clip gradients "
            "(clipnorm=1.0), or add BatchNormalization.",
            numbers,
        )


def _finite(loss: float, norms: Iterable[float]) -> bool:
    return math.isfinite(loss) and all(math.isfinite(v) for v in norms)


def _json(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
