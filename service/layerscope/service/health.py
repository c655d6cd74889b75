"""Model health for the Prometheus gauges, derived from a capture's activation summaries."""

from __future__ import annotations

from collections import Counter

from layerscope.service.domain import Finding, ModelDescription, Summary
from layerscope.service.telemetry import LayerHealth, ModelHealth

_BOUNDS = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
SATURATION_MARGIN = 0.02
"""An output within 2% of the range from a bound counts as saturated."""


def saturated_fraction(summary: Summary, activation: str | None) -> float:
    """The share of histogram mass within the margin of a bounded activation's bounds; 0 if unbounded."""
    if activation not in _BOUNDS or not summary.count:
        return 0.0
    low, high = _BOUNDS[activation]
    margin = SATURATION_MARGIN * (high - low)
    h_low, h_high = summary.histogram_range
    width = (h_high - h_low) / max(len(summary.histogram), 1)
    mass = 0
    for i, n in enumerate(summary.histogram):
        left, right = h_low + i * width, h_low + (i + 1) * width
        if right <= low + margin or left >= high - margin:
            mass += n
    return mass / summary.count


def layer_health(description: ModelDescription, activations: dict[str, Summary]) -> tuple[LayerHealth, ...]:
    activation_of = {layer.name: layer.activation for layer in description.layers}
    return tuple(
        LayerHealth(
            layer=point,
            dead_unit_fraction=summary.dead_unit_fraction if _relu_family(activation_of.get(_path(point))) else 0.0,
            saturated_fraction=saturated_fraction(summary, activation_of.get(_path(point))),
            non_finite=summary.non_finite,
            activation_rms=summary.rms,
        )
        for point, summary in activations.items()
    )


def with_findings(health: ModelHealth, findings: list[Finding]) -> ModelHealth:
    counts = Counter((f.code, f.severity.value) for f in findings)
    return ModelHealth(health.model, health.version, health.layers, dict(counts))


def _relu_family(activation: str | None) -> bool:
    # Only these output exactly 0 for every negative input: a unit that is never > 0 has no gradient.
    return activation in {"relu", "relu6"}


def _path(point: str) -> str:
    return point.rsplit(":", 1)[0]
