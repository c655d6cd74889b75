from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count
from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class ImageWithoutConv(StaticRule):
    """An image-like input is flattened straight into Dense layers, with no convolution.

    Symptom: Flatten turns an (H, W, C) image into a vector whose order the Dense layers cannot exploit:
    neighbouring pixels are unrelated inputs, nothing is shared across positions, the parameter count
    grows with the image size and the model generalises poorly (the satellite-image case).
    Remedy: start with Conv2D + pooling blocks (or a pretrained keras.applications backbone) and flatten
    or globally pool only their output.
    """

    code = "image-without-conv"
    severity = Severity.WARNING

    def __init__(self, min_side: int = 8, max_channels: int = 4) -> None:
        self.min_side = check_count("min_side", min_side, 2)
        self.max_channels = check_count("max_channels", max_channels, 1)

    def _image_like(self, spec: InputSpec) -> bool:
        shape = spec.shape
        if len(shape) != 4 or shape[-1] is None or shape[-1] > self.max_channels:
            return False
        return all(d is not None and d >= self.min_side for d in shape[1:3])

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            if layer.class_name not in lay.FLATTENING_LAYERS:
                continue
            images = [s for s in graph.reads_model_input(layer, _no_conv) if self._image_like(s)]
            if not images or not _feeds_dense(graph, layer):
                continue
            spec = images[0]
            findings.append(
                self.finding(
                    [layer.name],
                    f"Image input '{spec.name}' {lay.shape_text(spec.shape)} is flattened by '{layer.name}' "
                    f"into Dense layers; expected a convolution before flattening, received none.",
                    f"Add Conv2D and pooling blocks between input '{spec.name}' and '{layer.name}'.",
                    {"input": spec.name, "input_shape": list(spec.shape)},
                )
            )
        return findings


def _no_conv(layer: LayerInfo) -> bool:
    return not (lay.is_conv(layer) or lay.is_pool(layer) or lay.is_global_pool(layer) or lay.is_dense(layer))


def _feeds_dense(graph: Graph, layer: LayerInfo) -> bool:
    return any(lay.is_dense(n) for n in graph.downstream(layer, _no_conv))
