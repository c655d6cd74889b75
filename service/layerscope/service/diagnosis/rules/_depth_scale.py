"""Activation scale through the depth: shared by exploding-activations and vanishing-activations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.domain.description import LayerInfo, ModelDescription

BOUNDED = lay.SATURATING | {"softmax"}


@dataclass(frozen=True)
class Scale:
    layer: LayerInfo
    rms: float


def depth_scales(description: ModelDescription, evidence: RuntimeEvidence) -> list[Scale]:
    """The output rms of each learning layer (Dense/Conv) with an unbounded activation, in graph order;
    the first call of each layer, finite values only."""
    scales = []
    for layer in Graph(description).layers:
        if not lay.is_learning(layer) or lay.activation(layer) in BOUNDED:
            continue
        summary = evidence.activation(layer.name)
        if summary is None or summary.count == summary.non_finite:
            continue
        rms = summary.rms
        if np.isfinite(rms):
            scales.append(Scale(layer, rms))
    return scales
