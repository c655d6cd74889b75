from __future__ import annotations

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules._depth_scale import depth_scales
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_at_least, check_bool, check_count
from layerscope.service.diagnosis.scales import initial_batchnorm
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class ExplodingActivations(RuntimeRule):
    """Activation scale grows by orders of magnitude through the depth.

    Symptom: when each layer multiplies the scale of its input, the deep layers' outputs (and gradients)
    become huge, overflow to Inf/NaN in float16/float32, and training diverges.
    Remedy: use a variance-preserving initialisation (glorot/he), add BatchNormalization or
    LayerNormalization, normalise the inputs, and clip gradients.

    The scale is the rms of each Dense/Conv output (unbounded activations only), compared with the first.

    Models with untrained BatchNormalization (moving mean 0 and variance 1 everywhere, as after
    weights=None) are skipped unless skip_initial_batchnorm=False: in inference mode those layers do not
    normalise, so one forward pass does not show the scales training will see.
    """

    code = "exploding-activations"
    severity = Severity.WARNING

    def __init__(self, max_growth: float = 1e3, min_layers: int = 3, skip_initial_batchnorm: bool = True) -> None:
        self.max_growth = check_at_least("max_growth", max_growth, 1.0)
        self.min_layers = check_count("min_layers", min_layers, 2)

        self.skip_initial_batchnorm = check_bool("skip_initial_batchnorm", skip_initial_batchnorm)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        if self.skip_initial_batchnorm and initial_batchnorm(description):
            return []
        scales = depth_scales(description, evidence)
        if len(scales) < self.min_layers or scales[0].rms <= 0.0:
            return []
        first = scales[0]
        worst = max(scales[1:], key=lambda s: s.rms)
        start = next((s for s in scales[1:] if s.rms / first.rms > self.max_growth), None)
        if start is None:
            return []
        growth = worst.rms / first.rms
        return [
            self.finding(
                [start.layer.name, worst.layer.name] if start is not worst else [start.layer.name],
                f"Activation scale grows from rms {first.rms:.3g} at '{first.layer.name}' to {worst.rms:.3g} at "
                f"'{worst.layer.name}' (exceeding {self.max_growth:g}x from '{start.layer.name}' on); expected "
                f"growth of at most {self.max_growth:g}x, received {growth:.3g}x.",
                f"Add BatchNormalization before '{start.layer.name}', use glorot/he initialisation, and "
                f"normalise the inputs.",
                {
                    "reference_layer": first.layer.name,
                    "reference_rms": first.rms,
                    "first_exceeding": start.layer.name,
                    "largest_layer": worst.layer.name,
                    "largest_rms": worst.rms,
                    "growth": growth,
                },
            )
        ]
