from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity

UPSAMPLING = frozenset({"UpSampling1D", "UpSampling2D", "UpSampling3D"})


class ConvAfterFlatten(StaticRule):
    """Conv/Pool after Flatten or Dense (through a Reshape): the spatial arrangement it sees is fabricated.

    Symptom: after Flatten or Dense, neighbouring values are no longer neighbouring pixels; reshaping them
    back into a map and convolving treats an arbitrary order as space, so the convolution's locality and
    weight sharing buy nothing.
    Remedy: keep the convolutional blocks before Flatten/Dense; to build maps from a vector on purpose
    (decoders, generators) use Reshape followed by Conv2DTranspose or UpSampling2D.
    """

    code = "conv-after-flatten"
    severity = Severity.WARNING

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            if not (lay.is_conv(layer) or lay.is_pool(layer)) or lay.is_transposed_conv(layer):
                continue
            if all(d == 1 for d in lay.spatial(lay.input_shape(layer))):  # a 1x1 map has no arrangement
                continue
            source = next((n for n in graph.upstream(layer, _passes_shape) if _flattens(n)), None)
            if source is None:
                continue
            findings.append(
                self.finding(
                    [layer.name, source.name],
                    f"{layer.class_name} '{layer.name}' reads a map rebuilt from the output of "
                    f"{source.class_name} '{source.name}'; expected a spatial map from an image or "
                    f"convolution, received one fabricated from a flat vector.",
                    f"Move '{layer.name}' before '{source.name}', or use Conv2DTranspose/UpSampling2D to "
                    f"decode a vector into maps on purpose.",
                    {"source": source.name, "source_class": source.class_name},
                )
            )
        return findings


def _flattens(layer: LayerInfo) -> bool:
    return layer.class_name in lay.FLATTENING_LAYERS or lay.is_dense(layer)


def _passes_shape(layer: LayerInfo) -> bool:
    """Layers a fabricated map passes through on its way from Flatten/Dense to the convolution."""
    if layer.class_name in UPSAMPLING or lay.is_conv(layer) or lay.is_pool(layer) or _flattens(layer):
        return False
    return (
        layer.class_name in lay.RESHAPE_LAYERS
        or lay.is_transparent(layer)
        or lay.is_normalization(layer)
        or lay.is_activation_layer(layer)
    )
