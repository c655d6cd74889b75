"""Reading runtime summaries in layer order: what the runtime rules share."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.summary import Summary


def outputs_in_order(graph: Graph, evidence: RuntimeEvidence) -> Iterator[tuple[LayerInfo, str, Summary]]:
    """(layer, capture point, output summary) for every captured call, in layer-graph order."""
    for layer in graph.layers:
        for point, summary in evidence.calls(layer.name):
            yield layer, point, summary


def fraction_near_bounds(summary: Summary, low: float, high: float, margin: float) -> float:
    """A lower bound on the fraction of finite values within `margin * (high - low)` of either bound,
    read from the histogram (only bins that lie wholly inside those bands count)."""
    finite = sum(summary.histogram)
    if finite == 0:
        return 0.0
    band = margin * (high - low)
    lo, top = summary.histogram_range
    edges = np.linspace(lo, top, len(summary.histogram) + 1)
    near = sum(
        count
        for count, left, right in zip(summary.histogram, edges[:-1], edges[1:], strict=True)
        if left >= high - band or right <= low + band
    )
    return float(near) / finite


def initial_batchnorm(description: ModelDescription) -> list[str]:
    """BatchNormalization layers whose moving statistics were never updated (mean exactly 0, variance
    exactly 1): an untrained model. In inference mode such a layer does not normalise at all, so the
    activation scales of one forward pass say nothing about training; scale rules stand down."""
    found = []
    for layer in description.layers:
        if layer.class_name != "BatchNormalization":
            continue
        stats = {w.kind: w.summary for w in layer.weights}
        mean, variance = stats.get("moving_mean"), stats.get("moving_variance")
        if mean and variance and mean.min == mean.max == 0.0 and variance.min == variance.max == 1.0:
            found.append(layer.name)
    return found
