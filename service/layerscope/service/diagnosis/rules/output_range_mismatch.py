from __future__ import annotations

import math

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_at_least
from layerscope.service.diagnosis.rules.outputs import output_layers, output_range, range_text
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.training import INDEX_TARGET_LOSSES


class OutputRangeMismatch(TrainingRule):
    """The targets lie outside what the last activation can produce (sigmoid/softmax in [0, 1], ReLU >= 0,
    tanh in [-1, 1]).

    Symptom: the output can never reach those targets: the loss stops at the distance to the bound, the
    unit saturates and its gradient vanishes, and predictions pile up at the bound (targets 0..255 on a
    sigmoid, -1/+1 labels on a sigmoid, negative values on a ReLU output).
    Remedy: scale the targets into the output's range (divide pixels by 255, map -1/+1 labels to 0/1), or
    use an output activation whose range holds them (linear for unbounded values).
    """

    code = "output-range-mismatch"
    severity = Severity.ERROR

    def __init__(self, tolerance: float = 1e-6) -> None:
        self.tolerance = check_at_least("tolerance", tolerance, 0.0)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        findings = []
        layers = output_layers(description)
        targets = list(training.targets.items())
        # Targets that do not fit the loss at all (class indices under a categorical loss): target-loss-mismatch
        # says so, and their range means nothing until they do.
        unfit = {
            name
            for (name, target), loss in zip(training.targets.items(), training.losses, strict=False)
            if target.mismatch(loss) is not None
        }
        for i, (layer, (name, target)) in enumerate(zip(layers, targets, strict=False)):
            loss = training.losses[i].name if i < len(training.losses) else ""
            bounded = output_range(layer)
            shape = layer.output_shapes[0] if layer.output_shapes else ()
            if bounded is None or loss in INDEX_TARGET_LOSSES or len(target.shape) < len(shape) or name in unfit:
                continue  # class indices are not values the output should reach
            activation, (low, high) = bounded
            s = target.summary
            if s.count == s.non_finite or not (s.min < low - self.tolerance or s.max > high + self.tolerance):
                continue
            outside = f"[{s.min:g}, {s.max:g}]"
            findings.append(
                self.finding(
                    [layer.name],
                    f"Output layer '{layer.name}' ends in {activation}, which outputs {range_text((low, high))}; "
                    f"expected targets for '{name}' in that range, received targets in {outside}.",
                    f"Scale the targets into {range_text((low, high))} or give '{layer.name}' an activation whose "
                    f"range holds them (linear for unbounded values).",
                    {
                        "activation": activation,
                        "output_range": [low, high if math.isfinite(high) else None],
                        "target_min": s.min,
                        "target_max": s.max,
                        "loss": loss,
                    },
                )
            )
        return findings
