from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count, check_fraction
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class ParameterExplosion(StaticRule):
    """One Dense after Flatten holds most of the model's parameters.

    Symptom: Flatten of a large feature map makes the next Dense kernel (map size x channels x units)
    dwarf the rest of the network: memory and over-fitting grow, and the convolutional part that should
    carry the model becomes a small preamble.
    Remedy: down-sample further before flattening, or replace Flatten with GlobalAveragePooling2D; use
    fewer units in the first Dense layer.
    """

    code = "parameter-explosion"
    severity = Severity.WARNING

    def __init__(self, max_fraction: float = 0.5, min_parameters: int = 100_000) -> None:
        self.max_fraction = check_fraction("max_fraction", max_fraction)
        self.min_parameters = check_count("min_parameters", min_parameters, 0)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        total = description.parameters
        findings = []
        for layer in graph.layers:
            if not lay.is_dense(layer) or layer.parameters < self.min_parameters or total <= 0:
                continue
            flatten = next((n for n in graph.upstream(layer, lay.is_transparent) if _is_flatten(n)), None)
            fraction = layer.parameters / total
            if flatten is None or fraction <= self.max_fraction:
                continue
            findings.append(
                self.finding(
                    [layer.name],
                    f"Dense '{layer.name}' after Flatten '{flatten.name}' holds {layer.parameters:,} of "
                    f"{total:,} parameters ({fraction:.0%}); expected at most {self.max_fraction:.0%}, "
                    f"received {fraction:.0%}.",
                    f"Down-sample more before '{flatten.name}', or replace it with GlobalAveragePooling2D.",
                    {
                        "layer_parameters": layer.parameters,
                        "model_parameters": total,
                        "fraction": fraction,
                        "flatten_output": list(lay.output_shape(flatten) or ()),
                    },
                )
            )
        return findings


def _is_flatten(layer: LayerInfo) -> bool:
    return layer.class_name in lay.FLATTENING_LAYERS
