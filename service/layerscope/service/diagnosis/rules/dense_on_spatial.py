from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count
from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription, Shape
from layerscope.service.domain.findings import Finding, Severity

SEQUENCE_MARKERS = ("Embedding", "RNN", "LSTM", "GRU", "Bidirectional", "Attention")
"""Class-name fragments of the layers that make a path a sequence path (Embedding, SimpleRNN, LSTM, GRU,
Bidirectional, MultiHeadAttention, ...): a Dense behind them works per time step on purpose."""


class DenseOnSpatial(StaticRule):
    """Dense applied to a rank >= 3 tensor (batch axis included) from an image, Conv or Pool path, with no
    Flatten or global pooling in between, whose map then reaches a model output still at rank >= 3.

    Symptom: Keras 3 does not flatten a Dense input of higher rank: it applies the kernel on the last axis
    only, at every position, so the layer never sees the spatial arrangement and the output keeps the
    spatial axes. When that map is never reduced, the model predicts one vector per position (a (None, 6,
    6, 10) "class" output) and the output no longer matches the labels, or is matched only through a
    loss that broadcasts over the positions. This holds for 1D maps (Conv1D/MaxPooling1D output of rank 3,
    or a map reshaped to rank 3) as much as for 2D and 3D ones.
    Remedy: put Flatten or global pooling (GlobalAveragePooling1D/2D/3D) between the convolutional part and
    the Dense layers, or reduce the map (Flatten, global pooling, Reshape to rank 2) before the output.

    A Dense on a map whose every path forward is flattened, globally pooled or reshaped to rank 2 (or read
    by a recurrent or attention layer) before any model output is a pointwise projection on purpose: it
    equals a 1x1 convolution on the channel axis, as in the inverted-bottleneck MLP of ConvNeXt blocks and
    the token and channel mixing of MLP-Mixer, and is left alone. So is a Dense on a sequence (after an
    Embedding, a recurrent or an attention layer, or straight on a rank-3 model input), which works per
    time step on purpose. Only the first Dense on a map is reported; the evidence names the output the
    unreduced map reaches and its shape.
    """

    code = "dense-on-spatial"
    severity = Severity.ERROR

    def __init__(self, min_rank: int = 3, min_image_rank: int = 4) -> None:
        # Smallest Dense input rank (batch axis included) that counts as spatial behind a Conv/Pool layer,
        # and smallest rank at which a map reaching a model output counts as unreduced.
        self.min_rank = check_count("min_rank", min_rank, 3)
        # Smallest model input rank read as an image: a rank-3 input may just as well be a sequence.
        self.min_image_rank = check_count("min_image_rank", min_image_rank, 3)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            shape = lay.input_shape(layer)
            if not lay.is_dense(layer) or shape is None or len(shape) < self.min_rank:
                continue
            if all(d == 1 for d in lay.spatial(shape)):  # a 1x1 map: per position is the whole map
                continue
            source = self._spatial_source(graph, layer)
            if source is None:
                continue
            output = self._unreduced_output(graph, layer)
            if output is None:  # reduced before every output: a pointwise projection
                continue
            text, source_shape = source
            output_name, output_shape = output
            pool = f"GlobalAveragePooling{min(max(len(source_shape) - 2, 1), 3)}D"
            findings.append(
                self.finding(
                    [layer.name],
                    f"Dense '{layer.name}' receives shape {lay.shape_text(shape)} from {text}; expected rank 2 "
                    f"after Flatten or global pooling, received rank {len(shape)}: the kernel is applied on "
                    f"the last axis at every position, and the map reaches output '{output_name}' as "
                    f"{lay.shape_text(output_shape)} without being reduced.",
                    f"Insert Flatten() or {pool}() between {text} and '{layer.name}'.",
                    {
                        "input_rank": len(shape),
                        "input_shape": list(shape),
                        "source": text,
                        "source_shape": list(source_shape),
                        "output": output_name,
                        "output_shape": list(output_shape),
                    },
                )
            )
        return findings

    def _spatial_source(self, graph: Graph, layer: LayerInfo) -> tuple[str, Shape] | None:
        """The Conv/Pool layer or image input feeding `layer` with no Flatten or global pooling in between,
        with its output shape; None when there is none, or when a sequence path feeds `layer` too."""

        def keeps_map(node: LayerInfo) -> bool:
            shape = lay.output_shape(node)
            return shape is not None and len(shape) >= self.min_rank and not _ends_path(node)

        reached = list(graph.upstream(layer, keeps_map))
        if any(_is_sequence(node) for node in reached):
            return None
        for node in reached:
            shape = lay.output_shape(node)
            if (lay.is_conv(node) or lay.is_pool(node)) and shape is not None and len(shape) >= self.min_rank:
                return f"{node.class_name} '{node.name}'", shape
        images: list[InputSpec] = [
            spec for spec in graph.reads_model_input(layer, keeps_map) if len(spec.shape) >= self.min_image_rank
        ]
        if images:
            return f"image input '{images[0].name}'", images[0].shape
        return None

    def _unreduced_output(self, graph: Graph, layer: LayerInfo) -> tuple[str, Shape] | None:
        """A model output that `layer`'s map reaches still at rank >= min_rank, following it forward only
        through layers that keep it a map, with that output's shape; None when every path forward is
        reduced first (or ends in a layer whose shape is unknown: no evidence of an unreduced map)."""

        def keeps_map(node: LayerInfo) -> bool:
            shape = lay.output_shape(node)
            return shape is not None and len(shape) >= self.min_rank and not _reduces(node)

        for node in (layer, *graph.downstream(layer, keeps_map)):
            shape = lay.output_shape(node)
            if graph.is_output(node) and shape is not None and keeps_map(node):
                return node.name, shape
        return None


def _is_sequence(layer: LayerInfo) -> bool:
    return any(marker in layer.class_name for marker in SEQUENCE_MARKERS)


def _ends_path(layer: LayerInfo) -> bool:
    """Layers the walk back from a Dense stops at: the spatial source itself, what removes the spatial axes
    (Flatten, global pooling), another Dense (reported on its own) and sequence layers."""
    return (
        lay.is_conv(layer)
        or lay.is_pool(layer)
        or lay.is_global_pool(layer)
        or lay.is_dense(layer)
        or layer.class_name in lay.FLATTENING_LAYERS
        or _is_sequence(layer)
    )


def _reduces(layer: LayerInfo) -> bool:
    """Layers the walk forward from a Dense stops at, besides those whose output drops below min_rank (a
    Reshape to rank 2, an LSTM without return_sequences): Flatten and global pooling (keepdims=True
    included: its map is 1x1), and recurrent or attention layers, which read the positions as a sequence."""
    return lay.is_global_pool(layer) or layer.class_name in lay.FLATTENING_LAYERS or _is_sequence(layer)
