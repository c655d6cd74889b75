"""Windows of sampled traffic: per layer, sums that add up exactly.

Everything a window holds is a count, a sum, a minimum or a maximum, so two windows of the same model
version (and the same reference edges) merge by addition: minutes into an hour, replicas into one view.
Besides the tensor statistics (counts, sums and sums of squares of the values, extremes, zeros, NaN/Inf,
per-unit activity weighted by positions, the histogram on frozen edges), a window keeps the weighted sum and
sum of squares of each request's *features* (its histogram shares, unit activity and mean square), each
request weighted by its number of values: the drift test's evidence is the request (the values of one input
move together), and a request of 4 inputs weighs an eighth of one of 32, so a change in batch sizes is not
a change in traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from layerscope.service.domain.summary import HISTOGRAM_BINS, Summary
from layerscope.service.monitoring import projection


def features(summary: Summary, edges: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    """One request's evidence about one layer: histogram shares on the frozen edges (from the device's
    `counts` on those edges when given, else projected), per-unit activity, and the mean square (the scale):
    each an average over the request's values, so that requests of any size estimate the same thing."""
    shares = (
        projection.counted(summary, edges, counts) if counts is not None else projection.distribution(summary, edges)
    )
    return np.concatenate(
        (
            shares,
            np.asarray(summary.unit_activity, dtype=np.float64),
            [summary.rms**2 if math.isfinite(summary.rms) else 0.0],
        )
    )


def parts(edges: np.ndarray, units: int) -> dict[str, slice]:
    """Which features are which: the histogram, the unit activity, the scale."""
    h = len(edges) + 2
    return {"histogram": slice(0, h), "activity": slice(h, h + units), "scale": slice(h + units, h + units + 1)}


@dataclass
class LayerWindow:
    """One layer's sampled traffic in one window."""

    count: int = 0
    """Values seen (finite or not)."""
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    zeros: float = 0.0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    positions: float = 0.0
    """Values per unit, summed over requests: the weight of `activity`."""
    activity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per unit: positions where the unit was > 0, summed over requests."""
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Finite values on [zero, underflow, frozen bins, overflow]; empty until the layer has a reference."""
    requests: int = 0
    feature_sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Sum over requests of weight x features (the weight: the request's number of values)."""
    feature_squares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Sum over requests of weight x features squared."""
    feature_weight: float = 0.0
    """Sum of the weights of the requests with features."""
    featured: int = 0
    """Requests with features (those sampled once the window had its reference's edges)."""
    saturated_sum: float = 0.0
    saturated_requests: int = 0
    nonfinite_requests: int = 0

    @property
    def finite(self) -> int:
        return self.count - self.nan - self.posinf - self.neginf

    @property
    def mean(self) -> float:
        return self.total / self.finite if self.finite else 0.0

    @property
    def std(self) -> float:
        if not self.finite:
            return 0.0
        return math.sqrt(max(self.squares / self.finite - self.mean**2, 0.0))

    @property
    def unit_activity(self) -> np.ndarray:
        return self.activity / self.positions if self.positions else self.activity

    def add(
        self,
        summary: Summary,
        edges: np.ndarray | None,
        saturated: float | None = None,
        counts: np.ndarray | None = None,
    ) -> None:
        finite = summary.count - summary.non_finite
        self.count += summary.count
        self.total += summary.mean * finite
        self.squares += (summary.std**2 + summary.mean**2) * finite
        if finite:
            self.low, self.high = min(self.low, summary.min), max(self.high, summary.max)
        self.zeros += summary.zero_fraction * summary.count
        self.nan += summary.nan
        self.posinf += summary.posinf
        self.neginf += summary.neginf
        self.nonfinite_requests += int(summary.non_finite > 0)
        units = len(summary.unit_activity)
        if units:
            positions = summary.count / units
            activity = np.asarray(summary.unit_activity, dtype=np.float64) * positions
            self.activity = activity if not self.positions else self.activity + activity
            self.positions += positions
        if saturated is not None:
            self.saturated_sum += saturated
            self.saturated_requests += 1
        self.requests += 1
        if edges is None:
            return
        x = features(summary, edges, counts)
        shares = x[: len(edges) + 2] * finite
        self.histogram = shares if not self.histogram.size else self.histogram + shares
        weight = float(summary.count)
        self.feature_sum = weight * x if not self.feature_sum.size else self.feature_sum + weight * x
        squares = weight * x * x
        self.feature_squares = squares if not self.feature_squares.size else self.feature_squares + squares
        self.feature_weight += weight
        self.featured += 1

    def merge(self, other: LayerWindow) -> LayerWindow:
        """The two windows as one (the same reference edges, or one of them without any)."""
        return LayerWindow(
            count=self.count + other.count,
            total=self.total + other.total,
            squares=self.squares + other.squares,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            zeros=self.zeros + other.zeros,
            nan=self.nan + other.nan,
            posinf=self.posinf + other.posinf,
            neginf=self.neginf + other.neginf,
            positions=self.positions + other.positions,
            activity=_add(self.activity, other.activity),
            histogram=_add(self.histogram, other.histogram),
            requests=self.requests + other.requests,
            feature_sum=_add(self.feature_sum, other.feature_sum),
            feature_squares=_add(self.feature_squares, other.feature_squares),
            feature_weight=self.feature_weight + other.feature_weight,
            featured=self.featured + other.featured,
            saturated_sum=self.saturated_sum + other.saturated_sum,
            saturated_requests=self.saturated_requests + other.saturated_requests,
            nonfinite_requests=self.nonfinite_requests + other.nonfinite_requests,
        )

    def summary(self, edges: np.ndarray | None) -> Summary:
        """The window as one capture summary (histogram re-spread over the capture's 32 equal bins), for
        readers of runs: comparison, the health rules."""
        low, high = (self.low, self.high) if self.finite else (0.0, 0.0)
        top = high if high > low else low + max(1.0, abs(low) * 1e-6)
        histogram = np.zeros(HISTOGRAM_BINS)
        if edges is not None and self.histogram.size:
            histogram = projection.to_uniform(self.histogram[projection.UNDER :], edges, low, high, HISTOGRAM_BINS)
            zero_bin = (
                min(int((0.0 - low) * HISTOGRAM_BINS / (top - low)), HISTOGRAM_BINS - 1) if low <= 0 <= top else 0
            )
            histogram[zero_bin] += self.histogram[projection.ZERO]
        return Summary(
            count=self.count,
            mean=self.mean,
            std=self.std,
            min=low,
            max=high,
            zero_fraction=self.zeros / self.count if self.count else 0.0,
            nan=self.nan,
            posinf=self.posinf,
            neginf=self.neginf,
            histogram=tuple(int(np.rint(c)) for c in histogram),
            histogram_range=(low, top),
            unit_activity=tuple(float(a) for a in self.unit_activity),
            histogram_sample=None,
        )

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                data[name] = [float(v) for v in value]
            elif isinstance(value, float) and not math.isfinite(value):
                data[name] = None
            else:
                data[name] = value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LayerWindow:
        values = dict(data)
        for name in ("activity", "histogram", "feature_sum", "feature_squares"):
            values[name] = np.asarray(values.get(name, []), dtype=np.float64)
        values["low"] = math.inf if values.get("low") is None else values["low"]
        values["high"] = -math.inf if values.get("high") is None else values["high"]
        return cls(**values)


@dataclass(frozen=True)
class LayerDrift:
    """How far one layer of a closed window is from its reference."""

    score: float
    """The drift statistic over its threshold: >= 1 is drifting. 0 when not judged."""
    statistic: float
    threshold: float
    drifting: bool
    part: str
    """The features that moved most: histogram, activity or scale."""


@dataclass
class Window:
    """Sampled traffic of one model version on one replica between `started` and `ended`."""

    window_id: str
    model: str
    version: int
    replica: str
    started: datetime
    ended: datetime
    reference_id: str | None
    layers: dict[str, LayerWindow]
    """Capture point -> its sums, in model order (nearest the input first)."""
    input_nonfinite: int = 0
    """Non-finite values in the sampled requests' inputs themselves."""
    resolution: str = "window"
    """"window" as closed, or "hour" once rolled up."""
    drift: dict[str, LayerDrift] = field(default_factory=dict)
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    """Capture point -> the frozen edges its histogram is on (the reference's when the window opened)."""

    @property
    def requests(self) -> int:
        return max((layer.requests for layer in self.layers.values()), default=0)

    @property
    def drifting(self) -> list[str]:
        """Drifting layers in model order: the first is the one nearest the input."""
        return [name for name in self.layers if name in self.drift and self.drift[name].drifting]

    def to_data(self) -> dict[str, Any]:
        return {
            "layers": {name: layer.to_data() for name, layer in self.layers.items()},
            "drift": {name: vars(d) for name, d in self.drift.items()},
            "edges": {name: [float(v) for v in e] for name, e in self.edges.items()},
            "input_nonfinite": self.input_nonfinite,
        }

    @classmethod
    def from_data(cls, head: dict[str, Any], data: dict[str, Any]) -> Window:
        return cls(
            **head,
            layers={name: LayerWindow.from_data(layer) for name, layer in data["layers"].items()},
            drift={name: LayerDrift(**d) for name, d in data.get("drift", {}).items()},
            input_nonfinite=int(data.get("input_nonfinite", 0)),
            edges={name: np.asarray(e, dtype=np.float64) for name, e in data.get("edges", {}).items()},
        )

    def summaries(self) -> dict[str, Summary]:
        """Each layer's window as one capture summary (what run readers and comparisons take)."""
        return {name: layer.summary(self.edges.get(name)) for name, layer in self.layers.items()}


def merge_windows(windows: list[Window], window_id: str, resolution: str) -> Window:
    """Several windows of one model version (oldest first) as one; drift is not carried over (it was decided
    per window)."""
    first = windows[0]
    layers: dict[str, LayerWindow] = {}
    for window in windows:
        for name, layer in window.layers.items():
            layers[name] = layers[name].merge(layer) if name in layers else layer
    references = {w.reference_id for w in windows}
    return Window(
        window_id=window_id,
        model=first.model,
        version=first.version,
        replica=first.replica if len({w.replica for w in windows}) == 1 else "*",
        started=min(w.started for w in windows),
        ended=max(w.ended for w in windows),
        reference_id=first.reference_id if len(references) == 1 else None,
        layers=layers,
        input_nonfinite=sum(w.input_nonfinite for w in windows),
        resolution=resolution,
        edges=first.edges,
    )


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not a.size:
        return b.copy()
    if not b.size:
        return a.copy()
    if a.shape != b.shape:  # different reference edges: sums on different bins cannot be added
        raise ValueError(f"Expected windows on the same bins; received {a.shape} and {b.shape}.")
    return np.asarray(a + b, dtype=np.float64)
