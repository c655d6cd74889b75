from __future__ import annotations

import math

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_count, check_fraction
from layerscope.service.diagnosis.scales import outputs_in_order
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.summary import Summary


class DeadUnits(RuntimeRule):
    """Most units/channels of a ReLU-family layer never activate over the batch.

    Symptom: a ReLU unit whose input is negative for every example outputs 0 and gets no gradient, so it
    never recovers ("dying ReLU"): the layer's capacity is lost. Typical causes are large negative
    biases, a too-high learning rate, or unscaled inputs.
    Remedy: He initialisation, a lower learning rate, normalised inputs, BatchNormalization before the
    activation, or LeakyReLU/ELU which keep a gradient below zero.

    A unit after global pooling (a squeeze-and-excite block, a classifier head) sees one value per example
    instead of one per position, and that value is an average: over a batch it varies far less, so
    whether the unit fires is decided by little more than the sign of its weights against the mean
    features, and about half of a freshly initialised layer's units never fire by chance. Such layers are
    judged against `max_dead_fraction_after_pooling`; every other layer against `max_dead_fraction`.
    """

    code = "dead-units"
    severity = Severity.WARNING

    def __init__(
        self, max_dead_fraction: float = 0.5, min_units: int = 2, max_dead_fraction_after_pooling: float = 0.9
    ) -> None:
        self.max_dead_fraction = check_fraction("max_dead_fraction", max_dead_fraction, allow_zero=True)
        self.min_units = check_count("min_units", min_units, 1)
        self.max_dead_fraction_after_pooling = check_fraction(
            "max_dead_fraction_after_pooling", max_dead_fraction_after_pooling, allow_zero=True
        )

    @staticmethod
    def measure(layer: LayerInfo, output: Summary) -> float | None:
        """The fraction of units that never activated, for a ReLU-family layer (None for any other: a
        LeakyReLU or ELU unit below zero still has a gradient). The health gauge reads the same number."""
        return output.dead_unit_fraction if lay.activation(layer) in lay.RELU_FAMILY else None

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        findings = []
        reported: set[str] = set()
        graph = Graph(description)
        for layer, point, summary in outputs_in_order(graph, evidence):
            units = len(summary.unit_activity)
            dead = self.measure(layer, summary)
            if dead is None or units < self.min_units or layer.name in reported:
                continue
            pooled = after_global_pooling(graph, layer)
            bound = self.max_dead_fraction_after_pooling if pooled else self.max_dead_fraction
            if dead <= bound:
                continue
            reported.add(layer.name)
            findings.append(
                self.finding(
                    [layer.name],
                    f"{layer.class_name} '{layer.name}' has {round(dead * units)} of {units} units that never "
                    f"activate over the batch ({dead:.0%}); expected at most {bound:.0%} dead"
                    + (" (after global pooling: one value per example)" if pooled else "")
                    + f", received {dead:.0%}.",
                    f"Check the bias and inputs of '{layer.name}'; use he_normal initialisation, a lower "
                    f"learning rate, or LeakyReLU.",
                    {
                        "capture_point": point,
                        "dead_fraction": dead,
                        "dead_units": round(dead * units),
                        "units": units,
                        "zero_fraction": summary.zero_fraction,
                        "after_global_pooling": pooled,
                    },
                )
            )
        return findings


def after_global_pooling(graph: Graph, layer: LayerInfo) -> bool:
    """Whether a layer reads globally pooled features: it has one position per example, and so has every
    layer back to a global pooling layer."""
    if _positions(layer) != 1:
        return False
    through = [
        up
        for up in graph.upstream(layer, lambda x: _positions(x) == 1 and not lay.is_global_pool(x))
        if lay.is_global_pool(up)
    ]
    return bool(through)


def _positions(layer: LayerInfo) -> int | None:
    """Positions per example of a layer's output (1 for a (batch, units) or (batch, 1, 1, units) tensor)."""
    shape = lay.output_shape(layer)
    if shape is None:
        return None
    dims = lay.spatial(shape)
    return math.prod(d for d in dims if d is not None) if all(d is not None for d in dims) else None
