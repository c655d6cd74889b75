from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity

SHAPE_ONLY = lay.RESHAPE_LAYERS | lay.FLATTENING_LAYERS


class RedundantActivation(StaticRule):
    """Two activations in a row, or softmax in a hidden layer.

    Symptom: a second activation on an already activated output is at best a no-op (relu after relu) and
    usually distorts it (sigmoid after relu never goes below 0.5, softmax after softmax flattens the
    distribution); a softmax in a hidden layer couples all units into one distribution and squashes
    gradients.
    Remedy: keep one activation per layer (drop the fused one or the Activation layer), and use softmax
    only on the output.
    """

    code = "redundant-activation"
    severity = Severity.WARNING

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings: list[Finding] = []
        for layer in graph.layers:
            first = lay.activation(layer)
            if first is None or lay.is_merge(layer):
                continue
            second = next(
                (n for n in graph.downstream(layer, _passes) if lay.is_activation_layer(n)),
                None,
            )
            if second is not None and len(graph.successors(layer)) == 1:
                findings.append(self._double(layer, second, first))
            elif first == "softmax" and _hidden(graph, layer):
                findings.append(self._hidden_softmax(layer))
        return findings

    def _double(self, layer: LayerInfo, second: LayerInfo, first: str) -> Finding:
        other = lay.activation(second)
        return self.finding(
            [layer.name, second.name],
            f"{layer.class_name} '{layer.name}' already applies {first} and {second.class_name} "
            f"'{second.name}' applies {other} to its output; expected one activation, received two in a row.",
            f"Remove '{second.name}', or set activation=None on '{layer.name}'.",
            {"first": first, "second": other},
        )

    def _hidden_softmax(self, layer: LayerInfo) -> Finding:
        return self.finding(
            [layer.name],
            f"{layer.class_name} '{layer.name}' applies softmax in a hidden layer; expected softmax only on "
            f"an output, received it feeding further layers.",
            f"Use relu (or another element-wise activation) on '{layer.name}'.",
            {"activation": "softmax"},
        )


def _passes(layer: LayerInfo) -> bool:
    return (lay.is_transparent(layer) or layer.class_name in SHAPE_ONLY) and lay.activation(layer) is None


def _hidden(graph: Graph, layer: LayerInfo) -> bool:
    """True when the output reaches a learning layer (through shape-only and dropout layers)."""
    if graph.is_output(layer):
        return False
    return any(lay.is_learning(n) for n in graph.downstream(layer, _passes))
