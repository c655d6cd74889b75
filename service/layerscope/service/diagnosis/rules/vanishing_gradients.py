from __future__ import annotations

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_count, check_fraction
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class VanishingGradients(TrainingRule):
    """The first learning layers get orders of magnitude less gradient than the last.

    Symptom: the gradient shrinks on its way back through the network (each sigmoid/tanh multiplies it
    by at most 0.25/1, a poor initialisation scales it down layer by layer), so the first layers barely
    move: the network trains like a shallow one on top of random features, or not at all.
    Remedy: ReLU-family activations in hidden layers, He/Glorot initialisation matched to the activation,
    BatchNormalization, residual connections, or fewer layers.
    """

    code = "vanishing-gradients"
    severity = Severity.WARNING

    def __init__(self, max_ratio: float = 1e-3, min_learning_layers: int = 3) -> None:
        self.max_ratio = check_fraction("max_ratio", max_ratio)
        self.min_learning_layers = check_count("min_learning_layers", min_learning_layers, 2)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        # Per-element RMS of each kernel's gradient: comparable across layers of different sizes.
        scales = [
            (layer.name, training.gradients[layer.name]["kernel_gradient"])
            for layer in description.layers
            if "kernel_gradient" in training.gradients.get(layer.name, {})
        ]
        if len(scales) < self.min_learning_layers:
            return []
        (first, first_summary), (last, last_summary) = scales[0], scales[-1]
        if first_summary.non_finite or last_summary.non_finite or last_summary.rms <= 0.0:
            return []  # non-finite: exploding-gradients; all zero: nothing flows at all (dead units, ...)
        ratio = first_summary.rms / last_summary.rms
        if ratio >= self.max_ratio:
            return []
        faint = [name for name, s in scales[:-1] if s.rms < self.max_ratio * last_summary.rms]
        return [
            self.finding(
                faint,
                f"The first learning layer '{first}' gets a kernel gradient of RMS {first_summary.rms:.3g}, "
                f"{ratio:.2g} times that of the last, '{last}' ({last_summary.rms:.3g}); expected at least "
                f"{self.max_ratio:g} times, received {ratio:.2g} ({len(faint)} of {len(scales)} learning layers "
                "below it).",
                "Use ReLU-family activations with he_normal initialisation in hidden layers, add "
                "BatchNormalization or residual connections, or make the network shallower.",
                {
                    "first_layer": first,
                    "last_layer": last,
                    "first_rms": first_summary.rms,
                    "last_rms": last_summary.rms,
                    "ratio": ratio,
                    "layer_rms": {name: s.rms for name, s in scales},
                },
            )
        ]
