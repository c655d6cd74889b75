"""Which layer decides each model output, the range its activation can produce, and the loss compiled for it:
shared by the rules that compare an output with its loss or its targets."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.training import LOSS_ALIASES

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
    return [final_layer(graph, graph.get(name)) for name in description.outputs]


def output_range(layer: LayerInfo) -> tuple[str, tuple[float, float]] | None:
    activation = lay.activation(layer)
    if activation in BOUNDED:
        return activation, BOUNDED[activation]
    return None


def range_text(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"


@dataclass(frozen=True)
class Loss:
    name: str
    from_logits: bool


def parse_loss(value: Any) -> Loss | None:
    """One loss as Keras 3 writes it in a compile config: a name, or a serialized object or function."""
    if isinstance(value, str):
        return Loss(_canonical(value), False)
    if isinstance(value, Mapping):
        config = value.get("config")
        if value.get("class_name") == "function" and isinstance(config, str):
            return Loss(_canonical(config), False)
        class_name = value.get("class_name")
        if isinstance(class_name, str):
            logits = bool(config.get("from_logits", False)) if isinstance(config, Mapping) else False
            return Loss(_canonical(class_name), logits)
    return None


def _canonical(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("cross_entropy", "crossentropy")
    return LOSS_ALIASES.get(snake, snake)


def compiled_losses(value: Any, outputs: tuple[str, ...]) -> list[tuple[str, Loss]]:
    """(output layer, loss) pairs: one loss for all outputs, a list in output order, or a dict by name."""
    if value is None or not outputs:
        return []
    pairs: Iterable[tuple[str, Loss | None]]
    if isinstance(value, list):
        pairs = zip(outputs, (parse_loss(v) for v in value), strict=False)
    elif isinstance(value, Mapping) and "class_name" not in value:
        by_name = {str(k): parse_loss(v) for k, v in value.items()}
        pairs = ((o, by_name.get(o) or by_name.get(o.split("/")[0])) for o in outputs)
    else:
        loss = parse_loss(value)
        pairs = ((o, loss) for o in outputs)
    return [(o, loss) for o, loss in pairs if loss is not None]


def final_layer(graph: Graph, layer: LayerInfo) -> LayerInfo:
    """The layer that decides the output's activation: walk back over dropout, reshapes and flattening."""
    while lay.is_transparent(layer) or layer.class_name in lay.RESHAPE_LAYERS | lay.FLATTENING_LAYERS:
        before = graph.predecessors(layer)
        if len(before) != 1:
            break
        layer = before[0]
    return layer
