from __future__ import annotations

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
    """

    code = "dead-units"
    severity = Severity.WARNING

    def __init__(self, max_dead_fraction: float = 0.5, min_units: int = 2) -> None:
        self.max_dead_fraction = check_fraction("max_dead_fraction", max_dead_fraction, allow_zero=True)
        self.min_units = check_count("min_units", min_units, 1)

    @staticmethod
    def measure(layer: LayerInfo, output: Summary) -> float | None:
        """The fraction of units that never activated, for a ReLU-family layer (None for any other: a
        LeakyReLU or ELU unit below zero still has a gradient). The health gauge reads the same number."""
        return output.dead_unit_fraction if lay.activation(layer) in lay.RELU_FAMILY else None

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        findings = []
        reported: set[str] = set()
        for layer, point, summary in outputs_in_order(Graph(description), evidence):
            units = len(summary.unit_activity)
            dead = self.measure(layer, summary)
            if dead is None or units < self.min_units or layer.name in reported or dead <= self.max_dead_fraction:
                continue
            reported.add(layer.name)
            findings.append(
                self.finding(
                    [layer.name],
                    f"{layer.class_name} '{layer.name}' has {round(dead * units)} of {units} units that never "
                    f"activate over the batch ({dead:.0%}); expected at most {self.max_dead_fraction:.0%} "
                    f"dead, received {dead:.0%}.",
                    f"Check the bias and inputs of '{layer.name}'; use he_normal initialisation, a lower "
                    f"learning rate, or LeakyReLU.",
                    {
                        "capture_point": point,
                        "dead_fraction": dead,
                        "dead_units": round(dead * units),
                        "units": units,
                        "zero_fraction": summary.zero_fraction,
                    },
                )
            )
        return findings
