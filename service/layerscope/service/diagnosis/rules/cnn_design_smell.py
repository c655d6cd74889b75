from __future__ import annotations

import itertools

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_count
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class CnnDesignSmell(StaticRule):
    """Kernels growing with depth, filters shrinking as maps shrink, or no down-sampling in a deep CNN.

    Symptom: the usual CNN trades resolution for channels: small kernels stacked (two 3x3 see as far as
    one 5x5 with fewer weights), more filters as maps shrink (more, more abstract features), and
    down-sampling so that deep layers see the whole image. Growing kernels cost parameters for nothing,
    shrinking filters squeeze information exactly where it becomes abstract, and a deep stack without
    down-sampling is slow and keeps a small receptive field.
    Remedy: keep 3x3 kernels (use the largest only at the stem), double the filters at each
    down-sampling step, and add pooling or strided convolutions every few layers.
    """

    code = "cnn-design-smell"
    severity = Severity.INFO

    def __init__(self, min_convs: int = 3, min_deep_convs: int = 6) -> None:
        self.min_convs = check_count("min_convs", min_convs, 2)
        self.min_deep_convs = check_count("min_deep_convs", min_deep_convs, 2)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        convs = [layer for layer in graph.layers if lay.is_conv(layer) and not lay.is_transposed_conv(layer)]
        spatial = [c for c in convs if max(lay.window(c), default=1) > 1]
        findings = [
            *self._growing_kernels(spatial),
            *self._shrinking_filters(graph, convs),
            *self._no_downsampling(graph, spatial),
        ]
        return findings

    def _growing_kernels(self, convs: list[LayerInfo]) -> list[Finding]:
        sizes = [max(lay.window(c)) for c in convs]
        if len(sizes) < self.min_convs or sizes[-1] <= sizes[0]:
            return []
        if any(later < earlier for earlier, later in itertools.pairwise(sizes)):
            return []
        return [
            self.finding(
                [c.name for c in convs],
                f"Convolution kernels grow with depth from {sizes[0]} ('{convs[0].name}') to {sizes[-1]} "
                f"('{convs[-1].name}'); expected kernels to stay small (3x3) or shrink, received {sizes}.",
                f"Use 3x3 kernels in '{convs[-1].name}' and stack two of them where a larger field is needed.",
                {"problem": "growing_kernels", "kernel_sizes": sizes},
            )
        ]

    def _shrinking_filters(self, graph: Graph, convs: list[LayerInfo]) -> list[Finding]:
        """Compare the widest representation at each resolution: conv filters and merged (Add/Concatenate)
        channels, so DenseNet's growing concatenations count as width. 1x1 maps are left out: they hold
        globally pooled features (squeeze-and-excitation), not a resolution level."""
        widest: dict[int, tuple[int, LayerInfo]] = {}
        conv_names = {c.name for c in convs}
        for layer in graph.layers:
            area, width = _area(layer), lay.units(layer)
            is_width = layer.name in conv_names or lay.is_merge(layer)
            if not is_width or area is None or area == 1 or width is None:  # 1x1: pooled features (SE blocks)
                continue
            if area not in widest or width > widest[area][0]:
                widest[area] = (width, layer)
        if len(convs) < self.min_convs or len(widest) < 2:
            return []
        levels = [widest[a] for a in sorted(widest, reverse=True)]
        for (before, larger), (after, smaller) in itertools.pairwise(levels):
            if after < before:
                return [
                    self.finding(
                        [larger.name, smaller.name],
                        f"Filters shrink as the maps shrink: {before} in '{larger.name}' on a "
                        f"{lay.shape_text(lay.spatial(lay.output_shape(larger)))} map, at most {after} in "
                        f"'{smaller.name}' on a {lay.shape_text(lay.spatial(lay.output_shape(smaller)))} map; "
                        f"expected at least {before} filters after down-sampling, received {after}.",
                        f"Give '{smaller.name}' at least {before} filters (double them per down-sampling).",
                        {"problem": "shrinking_filters", "before": before, "after": after},
                    )
                ]
        return []

    def _no_downsampling(self, graph: Graph, convs: list[LayerInfo]) -> list[Finding]:
        if len(convs) < self.min_deep_convs:
            return []
        if any(lay.is_pool(n) or max(lay.strides(n), default=1) > 1 for n in graph.layers):
            return []
        return [
            self.finding(
                [convs[0].name, convs[-1].name],
                f"{len(convs)} convolutions from '{convs[0].name}' to '{convs[-1].name}' run at full resolution; "
                f"expected pooling or strided convolutions in a CNN this deep, received none.",
                "Add MaxPooling2D or strides=2 convolutions every two or three convolutions.",
                {"problem": "no_downsampling", "convolutions": len(convs)},
            )
        ]


def _area(layer: LayerInfo) -> int | None:
    dims = lay.spatial(lay.output_shape(layer))
    if not dims or any(d is None for d in dims):
        return None
    area = 1
    for d in dims:
        area *= int(d or 0)
    return area
