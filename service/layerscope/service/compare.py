"""Comparing two runs: what changed per layer and kind, and which findings came or went."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerscope.service.domain.findings import Finding
from layerscope.service.domain.runs import RunRecord
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import ProbeResult
from layerscope.service.errors import InvalidInput

GRID = 64
"""Bins of the common grid that both histograms are re-binned onto before measuring their distance."""


@dataclass(frozen=True)
class LayerChange:
    layer: str
    kind: str
    mean_delta: float
    std_delta: float
    zero_fraction_delta: float
    dead_unit_fraction_delta: float
    histogram_distance: float
    """Total variation distance of the two value distributions, 0 (same) to 1 (disjoint)."""


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    changes: tuple[LayerChange, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    new_findings: tuple[Finding, ...]
    resolved_findings: tuple[Finding, ...]
    probe: ProbeChange | None = None
    """Set when both runs hold a training probe."""


@dataclass(frozen=True)
class ProbeChange:
    """How two training probes differ (b minus a): the loss at the first and last step, and each layer's
    gradient norm at the first step (gradient summaries are compared like any other kind, in `changes`)."""

    first_loss_delta: float
    last_loss_delta: float
    gradient_norm_deltas: dict[str, float]


def compare_probes(a: ProbeResult, b: ProbeResult) -> ProbeChange | None:
    """How probe b differs from probe a; None when either has no steps. Gradient norms are compared for
    the layers both probes have."""
    if not a.steps or not b.steps:
        return None
    left, right = a.steps[0].gradient_norms, b.steps[0].gradient_norms
    return ProbeChange(
        first_loss_delta=b.steps[0].loss - a.steps[0].loss,
        last_loss_delta=b.steps[-1].loss - a.steps[-1].loss,
        gradient_norm_deltas={layer: right[layer] - left[layer] for layer in left if layer in right},
    )


def _density(summary: Summary, low: float, high: float) -> np.ndarray:
    """The histogram's mass spread uniformly within each bin, re-binned onto [low, high] in GRID bins."""
    counts = np.asarray(summary.histogram, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return np.zeros(GRID)
    edges = np.linspace(*summary.histogram_range, len(counts) + 1)
    grid = np.linspace(low, high, GRID + 1)
    cumulative = np.interp(grid, edges, np.concatenate([[0.0], np.cumsum(counts)]))
    density: np.ndarray = np.diff(cumulative) / total
    return density


def histogram_distance(a: Summary, b: Summary) -> float:
    low = min(a.histogram_range[0], b.histogram_range[0])
    high = max(a.histogram_range[1], b.histogram_range[1])
    if high <= low:
        return 0.0
    return float(0.5 * np.abs(_density(a, low, high) - _density(b, low, high)).sum())


def _key(f: Finding) -> tuple[str, tuple[str, ...]]:
    return f.code, f.layers


def compare(a: RunRecord, b: RunRecord) -> Comparison:
    """Layer by layer; both runs must be of one model (any two versions), else layer names mean nothing."""
    if a.model_name != b.model_name:
        raise InvalidInput(
            f"Expected two runs of one model (any versions); received run '{a.run_id}' of model "
            f"'{a.model_name}' v{a.model_version} and run '{b.run_id}' of model '{b.model_name}' "
            f"v{b.model_version}. Pick both from `layerscope runs {a.model_name}`."
        )
    left = {(s.layer, s.kind): s.summary for s in a.summaries}
    right = {(s.layer, s.kind): s.summary for s in b.summaries}
    changes = tuple(
        LayerChange(
            layer=layer,
            kind=kind,
            mean_delta=right[(layer, kind)].mean - left[(layer, kind)].mean,
            std_delta=right[(layer, kind)].std - left[(layer, kind)].std,
            zero_fraction_delta=right[(layer, kind)].zero_fraction - left[(layer, kind)].zero_fraction,
            dead_unit_fraction_delta=right[(layer, kind)].dead_unit_fraction - left[(layer, kind)].dead_unit_fraction,
            histogram_distance=histogram_distance(left[(layer, kind)], right[(layer, kind)]),
        )
        for layer, kind in left
        if (layer, kind) in right
    )
    before, after = {_key(f) for f in a.findings}, {_key(f) for f in b.findings}
    return Comparison(
        run_a=a.run_id,
        run_b=b.run_id,
        changes=changes,
        only_in_a=tuple(f"{layer}/{kind}" for layer, kind in left if (layer, kind) not in right),
        only_in_b=tuple(f"{layer}/{kind}" for layer, kind in right if (layer, kind) not in left),
        new_findings=tuple(f for f in b.findings if _key(f) not in before),
        resolved_findings=tuple(f for f in a.findings if _key(f) not in after),
        probe=compare_probes(a.probe, b.probe) if a.probe and b.probe else None,
    )
