from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_fraction
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class DropoutPlacement(StaticRule):
    """Dropout rate above 0.5, dropout as the last layer, or dropout right before BatchNormalization.

    Symptom: a rate above 0.5 drops most of the signal and slows or stalls learning; dropout on the output
    randomly zeroes predictions during training (the loss sees corrupted outputs); dropout right before
    BatchNormalization shifts the variance between training and inference, so the moving statistics no
    longer match (the "variance shift").
    Remedy: keep rates at or below 0.5, move dropout before the last Dense layer, and put dropout after
    the BatchNormalization (or drop one of them).
    """

    code = "dropout-placement"
    severity = Severity.WARNING

    def __init__(self, max_rate: float = 0.5) -> None:
        self.max_rate = check_fraction("max_rate", max_rate)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            if layer.class_name not in lay.DROPOUT_LAYERS:
                continue
            rate = float(layer.config.get("rate", 0.0) or 0.0)
            if rate > self.max_rate:
                findings.append(self._high_rate(layer, rate))
            if graph.is_output(layer):
                findings.append(self._last(layer, rate))
            norm = next((s for s in graph.successors(layer) if s.class_name == "BatchNormalization"), None)
            if norm is not None and rate > 0.0:
                findings.append(self._before_norm(layer, norm, rate))
        return findings

    def _high_rate(self, layer: LayerInfo, rate: float) -> Finding:
        return self.finding(
            [layer.name],
            f"{layer.class_name} '{layer.name}' drops {rate:.0%} of its inputs; expected rate <= "
            f"{self.max_rate}, received {rate}.",
            f"Lower the rate of '{layer.name}' to {self.max_rate} or less.",
            {"problem": "rate", "rate": rate},
        )

    def _last(self, layer: LayerInfo, rate: float) -> Finding:
        return self.finding(
            [layer.name],
            f"{layer.class_name} '{layer.name}' is the model's output layer; expected dropout before the last "
            f"Dense layer, received it after, where it zeroes predictions during training.",
            f"Move '{layer.name}' before the output layer.",
            {"problem": "last", "rate": rate},
        )

    def _before_norm(self, layer: LayerInfo, norm: LayerInfo, rate: float) -> Finding:
        return self.finding(
            [layer.name, norm.name],
            f"{layer.class_name} '{layer.name}' feeds BatchNormalization '{norm.name}' directly; expected "
            f"dropout after normalization, received it before (variance shift between training and "
            f"inference).",
            f"Move '{layer.name}' after '{norm.name}' (or after its activation).",
            {"problem": "before_batchnorm", "rate": rate},
        )
