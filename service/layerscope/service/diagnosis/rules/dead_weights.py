from __future__ import annotations

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_count, check_fraction, check_positive
from layerscope.service.domain.description import LayerInfo, ModelDescription, WeightInfo
from layerscope.service.domain.findings import Finding, Severity

KERNELS = frozenset({"kernel", "depthwise_kernel", "pointwise_kernel", "embeddings"})


class DeadWeights(RuntimeRule):
    """Almost all of a layer's weights are ~0.

    Symptom: a kernel that is (nearly) all zeros passes no signal and, for a zero kernel, no gradient to
    the layers before it: the layer is dead weight, typically after too strong L1/L2 regularisation,
    weight decay, aggressive pruning, or a zeros initialiser.
    Remedy: lower the regularisation or weight decay, re-initialise the layer with a random initialiser,
    or remove the layer if it was pruned away on purpose.
    """

    code = "dead-weights"
    severity = Severity.WARNING

    def __init__(self, min_zero_fraction: float = 0.95, atol: float = 1e-6, min_weights: int = 2) -> None:
        self.min_zero_fraction = check_fraction("min_zero_fraction", min_zero_fraction)
        self.atol = check_positive("atol", atol)
        self.min_weights = check_count("min_weights", min_weights, 1)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        findings = []
        for layer in description.layers:
            for weight in layer.weights:
                if weight.kind in KERNELS and weight.summary.count >= self.min_weights and self._dead(weight):
                    findings.append(self._finding(layer, weight))
        return findings

    def _dead(self, weight: WeightInfo) -> bool:
        s = weight.summary
        if s.non_finite:
            return False
        tiny = max(abs(s.min), abs(s.max)) <= self.atol
        return tiny or s.zero_fraction >= self.min_zero_fraction

    def _finding(self, layer: LayerInfo, weight: WeightInfo) -> Finding:
        s = weight.summary
        largest = max(abs(s.min), abs(s.max))
        return self.finding(
            [layer.name],
            f"{layer.class_name} '{layer.name}' has {weight.kind} weights that are almost all ~0 "
            f"({s.zero_fraction:.0%} exactly 0, largest |w| {largest:.3g}); expected at most "
            f"{self.min_zero_fraction:.0%} zeros and |w| above {self.atol:g}, received a dead kernel.",
            f"Lower the regularisation or weight decay on '{layer.name}', or re-initialise it randomly.",
            {
                "weight": weight.kind,
                "count": s.count,
                "zero_fraction": s.zero_fraction,
                "max_abs": largest,
            },
        )
