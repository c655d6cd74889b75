"""References and the drift test: is a window's traffic what the reference's traffic was?

Per layer, each request contributes one feature vector (histogram shares on frozen edges, per-unit activity,
mean square). The reference keeps the weighted mean and variance of those features over its requests; a window is
compared through

    S = sum_d (window_mean_d - reference_mean_d)^2 / (var_d * (1/W + 1/R))

where each request is weighted by its number of values, the means are weighted means, var_d is the variance of
one unit of weight (a request of weight w varies as var_d / w: its inputs are independent draws), and W and R
are the window's and the reference's total weights. Under stationary traffic each term is a squared standard
normal, whatever the requests' batch sizes, but the terms are correlated (neighbouring bins, units that fire
together), so S follows a scaled chi-square c * chi2(nu) rather than chi2(D). c and nu are fitted to S over
bootstrap windows drawn from the reference's own requests (which also carries the projection's noise and
small-window effects into the null): by its mean and its 99th percentile, or by its mean and variance,
whichever gives the heavier tail. A fit by moments alone was right in the middle and too light in the far tail
(bench/bench_drift.py: 3-15 false alarms a week where 1 was asked for); the tail fit follows the features
whose per-request values are skewed. The threshold is that distribution's quantile at alpha / L: alpha is one
false alarm per `false_alarms_per_week` worth of windows for the whole model, shared by its L watched layers
(Bonferroni), so a larger window or fewer layers lowers no one's guard. `bench/bench_drift.py` checks the
false-alarm rate and the detection delay by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist
from typing import Any

import numpy as np

from layerscope.service.domain.summary import Summary
from layerscope.service.monitoring import projection
from layerscope.service.monitoring.window import LayerDrift, LayerWindow, Window, features, parts

MIN_WINDOW_REQUESTS = 10
"""Fewer sampled requests than this in a window: not judged (below it the statistic's tail is far from the
fitted null: bench/bench_drift.py measured 5x the nominal false alarms at 5 requests)."""
VARIANCE_FLOOR = 1e-4
"""A feature constant over the reference (an empty bin, a dead unit) gets this variance (a spread of 0.01):
a change of a share of a percent is then evidence, a rounding difference is not."""
BOOTSTRAP_ROUNDS = 2000
BOOTSTRAP_WINDOW = 20
TAIL_LEVEL = 0.99
"""The bootstrap quantile the null's tail is fitted to (20 of 2000 rounds lie beyond it)."""
TAIL_CORRECTION = 5.0
"""The level is divided by this: extended from the bootstrap's 99th percentile out to the 1e-5 a layer is
judged at, the fitted c * chi2(nu) tail is still too light. bench/bench_drift.py measured 3-7 false alarms a
week where 1 was asked for (real activations, two CNNs, windows of 10-60 requests), most of it from skewed
per-unit activity features."""
SECONDS_PER_WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class LayerReference:
    edges: np.ndarray
    mean: np.ndarray
    """Weighted mean of the reference requests' features."""
    variance: np.ndarray
    """Variance of the features per unit of weight."""
    units: int
    scale: float
    """c of the null c * chi2(nu)."""
    dof: float
    """nu of the null."""
    dead_unit_fraction: float | None = None
    weight: float = 1.0
    """Total weight of the reference's requests (R)."""

    def to_data(self) -> dict[str, Any]:
        return {
            "edges": [float(v) for v in self.edges],
            "mean": [float(v) for v in self.mean],
            "variance": [float(v) for v in self.variance],
            "units": self.units,
            "scale": self.scale,
            "dof": self.dof,
            "dead_unit_fraction": self.dead_unit_fraction,
            "weight": self.weight,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LayerReference:
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in ("edges", "mean", "variance")}
        return cls(
            **arrays,
            units=int(data["units"]),
            scale=float(data["scale"]),
            dof=float(data["dof"]),
            dead_unit_fraction=data.get("dead_unit_fraction"),
            weight=float(data.get("weight", 1.0)),
        )


@dataclass(frozen=True)
class Reference:
    """What a model version's traffic looks like when it is healthy: one per version, shared by replicas."""

    reference_id: str
    model: str
    version: int
    created_at: datetime
    source: str
    """"traffic" (the first sampled requests after load) or "window:<id>" (set by a caller)."""
    requests: int
    layers: dict[str, LayerReference] = field(default_factory=dict)
    """Capture point -> its reference, in model order."""

    def data(self) -> dict[str, Any]:
        return {"layers": {name: layer.to_data() for name, layer in self.layers.items()}}

    @classmethod
    def from_data(cls, head: Mapping[str, Any], data: Mapping[str, Any]) -> Reference:
        layers = {name: LayerReference.from_data(layer) for name, layer in data["layers"].items()}
        return cls(**head, layers=layers)


def build_layer_reference(samples: Sequence[Summary], seed: int, dead: float | None = None) -> LayerReference:
    """A layer's reference from the summaries of its reference requests alone (one per request): edges chosen
    from them, features projected onto those edges (the server counts features on the device instead:
    `reference_from_rows`)."""
    edges = projection.choose_edges(samples)
    units = max((len(s.unit_activity) for s in samples), default=0)
    kept = [s for s in samples if len(s.unit_activity) == units]
    rows = np.stack([features(s, edges) for s in kept])
    return reference_from_rows(rows, np.array([float(s.count) for s in kept]), edges, units, seed, dead)


def reference_from_rows(
    rows: np.ndarray, weights: np.ndarray, edges: np.ndarray, units: int, seed: int, dead: float | None = None
) -> LayerReference:
    """A layer's reference from its reference requests' feature rows (one per request) and weights (their
    numbers of values) on `edges`."""
    total = float(weights.sum())
    mean = weights @ rows / total
    spread = weights @ (rows - mean) ** 2 / max(len(rows) - 1, 1) if len(rows) > 1 else np.zeros_like(mean)
    variance = np.maximum(spread, VARIANCE_FLOOR * total / len(rows))  # the floor, for a request of mean weight
    scale, dof = _calibrate(rows, weights, variance, seed)
    return LayerReference(edges, mean, variance, units, scale, dof, dead, total)


def reference_from_window(window: Window, reference: Reference, reference_id: str, at: datetime) -> Reference:
    """A caller's chosen window as the reference: its feature means and variances on the current reference's
    edges, and the current reference's calibration (the same features, so the same correlations)."""
    layers = {}
    for name, layer in window.layers.items():
        current = reference.layers.get(name)
        if current is None or layer.featured < 2 or layer.feature_sum.shape != current.mean.shape:
            continue
        total = layer.feature_weight
        mean = layer.feature_sum / total
        spread = (layer.feature_squares - total * mean * mean) / (layer.featured - 1)
        variance = np.maximum(spread, VARIANCE_FLOOR * total / layer.featured)
        layers[name] = LayerReference(
            current.edges,
            mean,
            variance,
            current.units,
            current.scale,
            current.dof,
            current.dead_unit_fraction,
            total,
        )
    return Reference(
        reference_id, window.model, window.version, at, f"window:{window.window_id}", window.requests, layers
    )


def reference_from_run(
    summaries: Mapping[str, Summary], reference: Reference, reference_id: str, at: datetime, source: str
) -> Reference:
    """One stored capture as the expected traffic: its features on the current reference's edges, with the
    current reference's request-to-request variance and calibration (one capture is evidence of one request:
    it counts as a reference of one, so only a clear change is called drift against it)."""
    layers = {}
    for name, current in reference.layers.items():
        summary = summaries.get(name)
        if summary is None or len(summary.unit_activity) != current.units:
            continue
        mean = features(summary, current.edges)
        layers[name] = LayerReference(
            current.edges,
            mean,
            current.variance,
            current.units,
            current.scale,
            current.dof,
            current.dead_unit_fraction,
            float(summary.count),
        )
    return Reference(reference_id, reference.model, reference.version, at, source, 1, layers)


def judge(window: Window, reference: Reference, windows_per_week: float, false_alarms_per_week: float) -> None:
    """Decide each layer of a closed window against the reference, in place (`window.drift`)."""
    judged = [name for name in window.layers if name in reference.layers]
    if not judged:
        return
    alpha = min(false_alarms_per_week / max(windows_per_week, 1.0), 0.5) / len(judged) / TAIL_CORRECTION
    for name in judged:
        window.drift[name] = judge_layer(window.layers[name], reference.layers[name], alpha)


def judge_layer(layer: LayerWindow, reference: LayerReference, alpha: float) -> LayerDrift:
    if layer.featured < MIN_WINDOW_REQUESTS or layer.feature_sum.shape != reference.mean.shape:
        return LayerDrift(0.0, 0.0, 0.0, False, "")
    window = layer.feature_weight
    terms = _terms(layer.feature_sum / window, reference.mean, reference.variance, window, reference.weight)
    statistic = float(terms.sum())
    threshold = reference.scale * chi2_quantile(reference.dof, alpha)
    by_part = {part: float(terms[s].sum()) for part, s in parts(reference.edges, reference.units).items()}
    score = statistic / threshold if threshold > 0 else 0.0
    return LayerDrift(score, statistic, threshold, score >= 1.0, max(by_part, key=lambda p: by_part[p]))


def chi2_quantile(dof: float, upper: float) -> float:
    """The value a chi-square with `dof` degrees of freedom exceeds with probability `upper` (Wilson and
    Hilferty's cube-root normal approximation: within a few percent for dof >= 2 down to 1e-8 tails)."""
    z = NormalDist().inv_cdf(1.0 - upper)
    k = max(dof, 0.5)
    return float(k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3)


def _terms(window_mean: np.ndarray, mean: np.ndarray, variance: np.ndarray, window: float, total: float) -> np.ndarray:
    """Each feature's squared standardised difference, for a window of weight `window` against a reference
    of weight `total`."""
    return np.asarray((window_mean - mean) ** 2 / (variance * (1.0 / window + 1.0 / max(total, 1e-12))))


def _calibrate(rows: np.ndarray, weights: np.ndarray, variance: np.ndarray, seed: int) -> tuple[float, float]:
    """c and nu of c * chi2(nu), fitted by moments to S between bootstrap windows and bootstrap references
    drawn from the reference's requests."""
    m = len(rows)
    if m < 3:
        return float(rows.shape[1]), 1.0  # no evidence of the correlations: the most conservative fit
    rng = np.random.default_rng(seed)
    n = min(BOOTSTRAP_WINDOW, m)
    # Each round's window and reference as draw counts over the rows: one matrix product for all rounds.
    window_draws = _draws(rng, m, n, BOOTSTRAP_ROUNDS) * weights
    base_draws = _draws(rng, m, m, BOOTSTRAP_ROUNDS) * weights
    window_weight, base_weight = window_draws.sum(axis=1), base_draws.sum(axis=1)
    windows = window_draws @ rows / window_weight[:, None]
    bases = base_draws @ rows / base_weight[:, None]
    scale = variance * (1.0 / window_weight + 1.0 / base_weight)[:, None]
    stats = ((windows - bases) ** 2 / scale).sum(axis=1)
    mu, var = float(stats.mean()), float(stats.var(ddof=1))
    if mu <= 0 or var <= 0:
        return 1.0, 1.0
    by_moments = 2.0 * mu * mu / var
    by_tail = _dof_for_tail(float(np.quantile(stats, TAIL_LEVEL)) / mu)
    dof = min(by_moments, by_tail)  # fewer degrees of freedom: the heavier tail of the two fits
    return mu / dof, dof


def _draws(rng: np.random.Generator, m: int, n: int, rounds: int) -> np.ndarray:
    """How often each of m rows is drawn, in `rounds` draws of n rows with replacement."""
    return rng.multinomial(n, np.full(m, 1.0 / m), size=rounds).astype(np.float64)


def _dof_for_tail(ratio: float) -> float:
    """nu such that chi2(nu)'s TAIL_LEVEL quantile over its mean (nu) equals `ratio` (the ratio falls as nu
    grows); bisection on a log scale between 0.5 and 1e5."""
    low, high = math.log(0.5), math.log(1e5)
    for _ in range(60):
        middle = (low + high) / 2
        nu = math.exp(middle)
        if chi2_quantile(nu, 1.0 - TAIL_LEVEL) / nu > ratio:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)
