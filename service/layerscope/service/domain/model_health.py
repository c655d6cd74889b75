"""A loaded model's health as the dashboards show it: per-layer gauges, findings and gradient norms."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerHealth:
    layer: str
    dead_unit_fraction: float | None
    """None where the dead-units rule does not judge the layer (not ReLU-family): no series is exported."""
    saturated_fraction: float | None
    """None where the saturated-units rule does not judge the layer (not a bounded activation)."""
    non_finite: int
    activation_rms: float


@dataclass(frozen=True)
class ModelHealth:
    """The latest health of one loaded model version, as the application last observed it."""

    model: str
    version: int
    layers: tuple[LayerHealth, ...] = ()
    findings: dict[tuple[str, str], int] = field(default_factory=dict)
    """(code, severity) -> count in the latest diagnosis."""
    gradient_norms: dict[str, float] = field(default_factory=dict)
    """layer -> gradient norm at the first step of the latest training probe."""
