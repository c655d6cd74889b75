from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class SaturatingDeepStack(StaticRule):
    """Many sigmoid/tanh hidden layers in a deep stack.

    Symptom: sigmoid and tanh saturate, and their derivatives (at most 0.25 and 1) multiply through the
    depth, so the gradient reaching the first layers vanishes and they stop learning.
    Remedy: use relu/gelu/swish in the hidden layers (with He initialisation), add normalisation or
    residual connections, or make the stack shallower. Sigmoid gates (feeding a Multiply, as in
    squeeze-and-excitation blocks) and outputs are not counted.
    """

    code = "saturating-deep-stack"
    severity = Severity.WARNING

    def __init__(self, min_layers: int = 5) -> None:
        self.min_layers = check_count("min_layers", min_layers, 2)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        stack = [layer for layer in graph.layers if _saturating_hidden(graph, layer)]
        if len(stack) < self.min_layers:
            return []
        names = [layer.name for layer in stack]
        used = sorted({lay.activation(layer) or "" for layer in stack})
        return [
            self.finding(
                names,
                f"{len(stack)} hidden layers apply {'/'.join(used)} ('{names[0]}' ... '{names[-1]}'); expected "
                f"fewer than {self.min_layers} saturating hidden layers in one stack, received {len(stack)}.",
                f"Use relu or gelu in the hidden layers from '{names[0]}' on, or add BatchNormalization and "
                f"residual connections.",
                {"saturating_layers": len(stack), "activations": used},
            )
        ]


def _saturating_hidden(graph: Graph, layer: LayerInfo) -> bool:
    if lay.activation(layer) not in lay.SATURATING or graph.is_output(layer):
        return False
    successors = graph.successors(layer)
    return bool(successors) and not any(s.class_name == "Multiply" for s in successors)
