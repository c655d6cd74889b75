from __future__ import annotations

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules._depth_scale import depth_scales
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_bool, check_count, check_fraction
from layerscope.service.diagnosis.scales import initial_batchnorm
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class VanishingActivations(RuntimeRule):
    """Activation scale shrinks towards zero through the depth.

    Symptom: when each layer shrinks the scale of its input, the deep layers' outputs carry almost no
    signal and their gradients vanish: the model learns slowly or not at all, and its output barely
    depends on the input.
    Remedy: use a variance-preserving initialisation (he_normal before relu, glorot otherwise), add
    BatchNormalization or residual connections, and avoid tiny initial weights.

    The scale is the rms of each Dense/Conv output (unbounded activations only), compared with the first.

    Models with untrained BatchNormalization (moving mean 0 and variance 1 everywhere, as after
    weights=None) are skipped unless skip_initial_batchnorm=False: in inference mode those layers do not
    normalise, so one forward pass does not show the scales training will see.
    """

    code = "vanishing-activations"
    severity = Severity.WARNING

    def __init__(self, min_ratio: float = 1e-3, min_layers: int = 3, skip_initial_batchnorm: bool = True) -> None:
        self.min_ratio = check_fraction("min_ratio", min_ratio)
        self.min_layers = check_count("min_layers", min_layers, 2)

        self.skip_initial_batchnorm = check_bool("skip_initial_batchnorm", skip_initial_batchnorm)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        if self.skip_initial_batchnorm and initial_batchnorm(description):
            return []
        scales = depth_scales(description, evidence)
        if len(scales) < self.min_layers or scales[0].rms <= 0.0:
            return []
        first = scales[0]
        start = next((s for s in scales[1:] if s.rms / first.rms < self.min_ratio), None)
        if start is None:
            return []
        smallest = min(scales[1:], key=lambda s: s.rms)
        ratio = smallest.rms / first.rms
        names = [start.layer.name] if start is smallest else [start.layer.name, smallest.layer.name]
        return [
            self.finding(
                names,
                f"Activation scale shrinks from rms {first.rms:.3g} at '{first.layer.name}' to "
                f"{smallest.rms:.3g} at '{smallest.layer.name}' (below {self.min_ratio:g}x from "
                f"'{start.layer.name}' on); expected at least {self.min_ratio:g}x of the first layer's scale, "
                f"received {ratio:.3g}x.",
                f"Use he_normal/glorot initialisation up to '{start.layer.name}', or add BatchNormalization "
                f"or residual connections.",
                {
                    "reference_layer": first.layer.name,
                    "reference_rms": first.rms,
                    "first_below": start.layer.name,
                    "smallest_layer": smallest.layer.name,
                    "smallest_rms": smallest.rms,
                    "ratio": ratio,
                },
            )
        ]
