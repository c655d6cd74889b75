from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count
from layerscope.service.domain import Finding, LayerInfo, ModelDescription, Severity


class DenseOnSpatial(StaticRule):
    """Dense applied to a spatial (rank >= 4) tensor from an image, Conv or Pool path.

    Symptom: Keras 3 does not flatten a Dense input of higher rank: it applies the kernel on the last axis
    only, at every position, so the layer never sees the spatial arrangement and the output keeps the
    spatial axes (often silently reduced later, or mismatched with the labels).
    Remedy: put Flatten or GlobalAveragePooling2D between the convolutional part and the Dense layers.
    """

    code = "dense-on-spatial"
    severity = Severity.ERROR

    def __init__(self, min_rank: int = 4) -> None:
        self.min_rank = check_count("min_rank", min_rank, 3)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            shape = lay.input_shape(layer)
            if not lay.is_dense(layer) or shape is None or len(shape) < self.min_rank:
                continue
            if all(d == 1 for d in lay.spatial(shape)):  # a 1x1 map: per position is the whole map
                continue
            source = _spatial_source(graph, layer)
            if source is None:
                continue
            findings.append(
                self.finding(
                    [layer.name],
                    f"Dense '{layer.name}' receives shape {lay.shape_text(shape)} from {source}; expected rank 2 "
                    f"after Flatten or global pooling, received rank {len(shape)}: the kernel is applied on "
                    f"the last axis at every position.",
                    f"Insert Flatten() or GlobalAveragePooling2D() before '{layer.name}'.",
                    {"input_rank": len(shape), "input_shape": list(shape), "source": source},
                )
            )
        return findings


def _spatial_source(graph: Graph, layer: LayerInfo) -> str | None:
    """The Conv/Pool layer or image input feeding `layer` with no Flatten or global pooling in between."""

    def keeps_map(node: LayerInfo) -> bool:
        shape = lay.output_shape(node)
        return not (lay.is_conv(node) or lay.is_pool(node)) and shape is not None and len(shape) >= 4

    for spec in graph.reads_model_input(layer, keeps_map):
        if len(spec.shape) >= 4:
            return f"image input '{spec.name}'"
    for node in graph.upstream(layer, keeps_map):
        shape = lay.output_shape(node)
        if (lay.is_conv(node) or lay.is_pool(node)) and shape is not None and len(shape) >= 4:
            return f"{node.class_name} '{node.name}'"
    return None
