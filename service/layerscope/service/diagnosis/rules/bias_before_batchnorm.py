from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class BiasBeforeBatchNorm(StaticRule):
    """Dense/Conv with a bias feeds BatchNormalization directly.

    Symptom: BatchNormalization subtracts the per-channel mean and adds its own offset (beta), so the
    preceding layer's bias is cancelled exactly: parameters and compute that never affect the output.
    Remedy: set use_bias=False on the layer before BatchNormalization.
    """

    code = "bias-before-batchnorm"
    severity = Severity.INFO

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        pairs: list[tuple[LayerInfo, LayerInfo]] = []
        for layer in graph.layers:
            if not lay.is_learning(layer) or not layer.config.get("use_bias", False):
                continue
            if lay.activation(layer) is not None:  # the bias shifts the input of the non-linearity: it counts
                continue
            successors = graph.successors(layer)
            if len(successors) == 1 and _normalizes_channels(successors[0], layer):
                pairs.append((layer, successors[0]))
        if not pairs:
            return []
        layer, norm = pairs[0]
        more = f" ({len(pairs) - 1} more pairs like it)" if len(pairs) > 1 else ""
        return [
            self.finding(
                [name for pair in pairs for name in (pair[0].name, pair[1].name)],
                f"{layer.class_name} '{layer.name}' adds a bias that BatchNormalization '{norm.name}' removes "
                f"again{more}; expected use_bias=False before batch normalization, received use_bias=True.",
                f"Set use_bias=False on '{layer.name}'" + (" and the others listed." if more else "."),
                {"pairs": len(pairs), "wasted_parameters": sum(lay.units(p[0]) or 0 for p in pairs)},
            )
        ]


def _normalizes_channels(norm: LayerInfo, layer: LayerInfo) -> bool:
    if norm.class_name != "BatchNormalization":
        return False
    shape = lay.output_shape(layer)
    axis = norm.config.get("axis", -1)
    axes = axis if isinstance(axis, list) else [axis]
    rank = len(shape) if shape else 0
    return any(isinstance(a, int) and (a == -1 or a == rank - 1) for a in axes)
