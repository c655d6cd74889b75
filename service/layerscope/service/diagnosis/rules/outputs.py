"""Which layer decides each model output, and the range its activation can produce: shared by the rules
that compare an output with its loss or its targets."""

from __future__ import annotations

import math

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.output_loss_mismatch import _final
from layerscope.service.domain.description import LayerInfo, ModelDescription

BOUNDED = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "softmax": (0.0, 1.0),
    "relu": (0.0, math.inf),
    "relu6": (0.0, 6.0),
    "tanh": (-1.0, 1.0),
}
"""Activation -> the closed range of values it can output."""


def output_layers(description: ModelDescription) -> list[LayerInfo]:
    """The layer whose activation decides each output, in output order (past dropout, reshapes, flattening)."""
    graph = Graph(description)
    return [_final(graph, graph.get(name)) for name in description.outputs]


def output_range(layer: LayerInfo) -> tuple[str, tuple[float, float]] | None:
    activation = lay.activation(layer)
    if activation in BOUNDED:
        return activation, BOUNDED[activation]
    return None


def range_text(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
