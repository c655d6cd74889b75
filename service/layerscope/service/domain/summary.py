"""The statistics of one captured tensor, and `summarize`, their reference implementation in NumPy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

HISTOGRAM_BINS = 32
"""Every histogram has this many equal-width bins between the finite minimum and maximum."""


@dataclass(frozen=True)
class Summary:
    """Statistics of one captured tensor.

    Moments, extremes and the histogram are over the finite values only; the non-finite ones are counted.
    `unit_activity[i]` is the fraction of positions (batch and spatial) where unit/channel `i` (the last
    axis) is > 0; empty for weights.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan: int
    posinf: int
    neginf: int
    histogram: tuple[int, ...]
    histogram_range: tuple[float, float]
    unit_activity: tuple[float, ...] = ()

    @property
    def non_finite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def rms(self) -> float:
        return float(np.sqrt(self.std**2 + self.mean**2))

    @property
    def dead_unit_fraction(self) -> float:
        """Fraction of units that were never > 0; 0.0 when unit activity was not captured."""
        if not self.unit_activity:
            return 0.0
        return sum(1 for a in self.unit_activity if a <= 0.0) / len(self.unit_activity)


def summarize(values: np.ndarray, *, per_unit: bool = True) -> Summary:
    """The reference implementation of `Summary` in NumPy.

    The capture engine computes the same numbers on the device; tests compare the two, and code that has
    a tensor on the host (weights at load time, stored tensors) uses this one.
    """
    x = np.asarray(values)
    flat = x.astype(np.float64, copy=False).ravel()
    nan = int(np.isnan(flat).sum())
    posinf = int(np.isposinf(flat).sum())
    neginf = int(np.isneginf(flat).sum())
    finite = flat[np.isfinite(flat)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        mean, std = float(finite.mean()), float(finite.std())
    else:
        lo = hi = mean = std = 0.0
    # A constant tensor gets a bin range of width 1, wider for huge values, where lo + 1.0 == lo.
    top = hi if hi > lo else lo + max(1.0, abs(lo) * 1e-6)
    hist, _ = np.histogram(finite, bins=HISTOGRAM_BINS, range=(lo, top))
    activity: tuple[float, ...] = ()
    if per_unit and x.ndim >= 1 and x.size:
        units = x.reshape(-1, x.shape[-1]).astype(np.float64, copy=False)
        activity = tuple(float(a) for a in (units > 0).mean(axis=0))
    return Summary(
        count=int(flat.size),
        mean=mean,
        std=std,
        min=lo,
        max=hi,
        zero_fraction=float((flat == 0).mean()) if flat.size else 0.0,
        nan=nan,
        posinf=posinf,
        neginf=neginf,
        histogram=tuple(int(c) for c in hist),
        histogram_range=(lo, top),
        unit_activity=activity,
    )


LayerSummaries = Mapping[str, Mapping[str, Summary]]
"""Captured summaries: layer capture name -> kind (activation, input, kernel, bias, ...) -> Summary."""
