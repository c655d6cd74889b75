"""Model health for the Prometheus gauges, measured by the rules the diagnosis runs.

The dead-unit and saturation gauges call the `measure` of the same `DeadUnits` and `SaturatedUnits`
instances the Diagnoser holds (same activation families, bounds, margin and denominator), so a dashboard
and an audit never disagree about one layer: a finding fires where its gauge passes the rule's threshold.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.evidence import layer_of
from layerscope.service.diagnosis.rules.base import Rule
from layerscope.service.diagnosis.rules.dead_units import DeadUnits
from layerscope.service.diagnosis.rules.saturated_units import SaturatedUnits
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.model_health import LayerHealth, ModelHealth
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import ProbeResult

R = TypeVar("R", bound=Rule)


class HealthGauges:
    def __init__(self, dead: DeadUnits, saturated: SaturatedUnits) -> None:
        self.dead = dead
        self.saturated = saturated

    @classmethod
    def of(cls, diagnoser: Diagnoser) -> HealthGauges:
        """The gauges of the rules this Diagnoser runs (default thresholds where it runs none)."""
        return cls(_rule(diagnoser, DeadUnits), _rule(diagnoser, SaturatedUnits))

    def measure(self, description: ModelDescription) -> Callable[[str, Summary], tuple[float | None, float | None]]:
        """(capture point, activation summary) -> (dead-unit fraction, saturated fraction) of `description`'s
        layers, None where a rule does not judge the layer: what live-traffic monitoring feeds its gauges."""
        by_name = {layer.name: layer for layer in description.layers}

        def measure(point: str, summary: Summary) -> tuple[float | None, float | None]:
            layer = by_name.get(layer_of(point))
            if layer is None:
                return None, None
            return self.dead.measure(layer, summary), self.saturated.measure(layer, summary)

        return measure

    def layers(self, description: ModelDescription, activations: Mapping[str, Summary]) -> tuple[LayerHealth, ...]:
        """One entry per capture point; where the rules do not judge a layer (not ReLU-family, not bounded)
        its fraction is None, and no series is exported for it."""
        by_name = {layer.name: layer for layer in description.layers}
        health = []
        for point, summary in activations.items():
            layer = by_name.get(layer_of(point))
            dead = self.dead.measure(layer, summary) if layer else None
            saturated = self.saturated.measure(layer, summary) if layer else None
            health.append(
                LayerHealth(
                    layer=point,
                    dead_unit_fraction=dead,
                    saturated_fraction=saturated,
                    non_finite=summary.non_finite,
                    activation_rms=summary.rms,
                )
            )
        return tuple(health)


def with_findings(health: ModelHealth, findings: list[Finding]) -> ModelHealth:
    counts = Counter((f.code, f.severity.value) for f in findings)
    return dataclasses.replace(health, findings=dict(counts))


def with_probe(health: ModelHealth, probe: ProbeResult) -> ModelHealth:
    """The gradient norms of the probe's first step: the served weights' gradients, before any update."""
    norms = dict(probe.steps[0].gradient_norms) if probe.steps else {}
    return dataclasses.replace(health, gradient_norms=norms)


def _rule(diagnoser: Diagnoser, kind: type[R]) -> R:
    return next((rule for rule in diagnoser.rules if isinstance(rule, kind)), kind())
