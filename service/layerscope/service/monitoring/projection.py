"""Histograms on frozen bin edges: what lets windows add up and compare with their reference.

A capture's histogram has its own 32 equal bins between the tensor's minimum and maximum, different for every
request. A monitored layer instead gets edges frozen once, from its reference (equal-mass bins of the
reference's pooled values), plus an underflow and an overflow bin and a bin of exact zeros (ReLU layers hold
most of their mass there, and the zero count is exact). Each sampled request's histogram is projected onto
those edges once, assuming its values spread evenly within each of its own bins; from then on windows
hold counts on the same bins and merge by addition, and a window compares with the reference bin by bin.
Once a version's edges are chosen (from its first sampled requests, by projecting their histograms), its
sampled requests are counted on those edges on the device (`counted`), exactly: the reference's statistics
and every window come from such counts. Projecting each request instead was biased by the request's own
range, so a change of batch size alone (a narrower min..max) read as drift (bench/bench_drift.py). The
projection remains for choosing the edges, for a capture run taken as a reference, and for the rare sample
taken before its edges reached the request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerscope.service.domain.summary import Summary

FROZEN_BINS = 16
"""Equal-mass bins between the reference's 0.5% and 99.5% quantiles: few enough that a window of tens of
requests estimates each, enough to see a shift of a fraction of the spread."""
TAIL = 0.005
"""The reference mass below the first edge and above the last (the underflow and overflow bins)."""
ZERO, UNDER = 0, 1
"""Positions of the zero bin and the underflow bin; the frozen bins follow, then the overflow bin."""
_GRID = 512


def distribution(summary: Summary, edges: np.ndarray) -> np.ndarray:
    """The finite values of one captured tensor as shares over [zero, underflow, frozen bins..., overflow].

    Sums to 1 when the tensor held a finite value (all zeros otherwise: NaN and Inf are counted apart)."""
    if summary.count <= summary.non_finite:
        return np.zeros(len(edges) + 2)
    zeros = _zero_share(summary)
    counts = np.asarray(summary.histogram, dtype=np.float64)
    lo, top = summary.histogram_range
    if counts.sum() > 0:
        counts = _without_zeros(counts, lo, top, zeros * counts.sum())
        counts = _spread(counts, lo, top, np.concatenate(([-np.inf], edges, [np.inf])))
    return _shares(counts, zeros, len(edges) + 2)


def counted(summary: Summary, edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The same shares as `distribution`, from counts taken on the device on these very edges
    ([below, bins..., at or above the last, zeros among them]): exact, with no projection."""
    binned = np.asarray(counts[:-1], dtype=np.float64)
    if summary.count <= summary.non_finite or binned.sum() <= 0:
        return np.zeros(len(edges) + 2)
    binned[int(np.searchsorted(edges, 0.0, side="right"))] -= float(counts[-1])  # the zeros' own bucket
    return _shares(np.maximum(binned, 0.0), _zero_share(summary), len(edges) + 2)


def choose_edges(summaries: Sequence[Summary], bins: int = FROZEN_BINS) -> np.ndarray:
    """Equal-mass edges of the pooled nonzero finite values of the reference's requests (strictly increasing;
    fewer bins where the values take few distinct levels)."""
    finite = [s for s in summaries if s.count > s.non_finite and sum(s.histogram) > 0]
    if not finite:
        return np.array([0.0, 1.0])
    lo = min(s.histogram_range[0] for s in finite)
    hi = max(s.histogram_range[1] for s in finite)
    if not hi > lo:
        return np.array([lo, lo + max(1.0, abs(lo) * 1e-6)])
    grid = np.linspace(lo, hi, _GRID + 1)
    pooled = np.zeros(_GRID)
    for s in finite:
        lo_s, top_s = s.histogram_range
        counts = np.asarray(s.histogram, dtype=np.float64)
        counts = _without_zeros(counts, lo_s, top_s, _zero_share(s) * counts.sum())
        if counts.sum() > 0:
            pooled += _spread(counts, lo_s, top_s, grid) / counts.sum()
    if pooled.sum() <= 0:  # every value was zero
        return np.array([0.0, 1.0])
    cdf = np.concatenate(([0.0], np.cumsum(pooled) / pooled.sum()))
    levels = TAIL + (1 - 2 * TAIL) * np.arange(bins + 1) / bins
    edges = np.unique(np.interp(levels, cdf, grid))
    return edges if len(edges) >= 2 else np.array([edges[0], edges[0] + max(1.0, abs(edges[0]) * 1e-6)])


def to_uniform(frozen: np.ndarray, edges: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Counts on [underflow, frozen bins, overflow] re-spread over `bins` equal bins of [low, high] (for
    readers that expect a capture's histogram, such as run comparison)."""
    top = high if high > low else low + max(1.0, abs(low) * 1e-6)
    outer = np.concatenate(([min(low, edges[0])], edges, [max(top, edges[-1])]))
    target = np.linspace(low, top, bins + 1)
    out = np.zeros(bins)
    for i, count in enumerate(frozen):
        if count <= 0:
            continue
        a, b = outer[i], outer[i + 1]
        if b <= a:
            out[int(np.clip(np.searchsorted(target, a, "right") - 1, 0, bins - 1))] += count
            continue
        overlap = np.clip(np.minimum(target[1:], b) - np.maximum(target[:-1], a), 0, None)
        out += count * overlap / (b - a)
    return out


def _zero_share(summary: Summary) -> float:
    """The exact share of zeros among the tensor's finite values (the histogram's own count is sampled)."""
    return summary.zero_fraction * summary.count / max(summary.count - summary.non_finite, 1)


def _shares(nonzero: np.ndarray, zeros: float, size: int) -> np.ndarray:
    """[zero, underflow, bins..., overflow] shares from the nonzero finite values' counts on those buckets."""
    out = np.zeros(size)
    total = nonzero.sum()
    if total > 0:
        out[UNDER:] = nonzero / total * max(1.0 - zeros, 0.0)
    out[ZERO] = min(zeros, 1.0)
    return out


def _without_zeros(counts: np.ndarray, lo: float, top: float, zeros: float) -> np.ndarray:
    """The histogram with its exact zeros taken out of the bin they fell in."""
    if zeros <= 0 or not lo <= 0.0 <= top or not top > lo:
        return counts
    index = min(int((0.0 - lo) * len(counts) / (top - lo)), len(counts) - 1)
    counts = counts.copy()
    counts[index] = max(counts[index] - zeros, 0.0)
    return counts


def _spread(counts: np.ndarray, lo: float, top: float, target: np.ndarray) -> np.ndarray:
    """Counts of equal bins over [lo, top] spread over the intervals of `target` (edges, maybe infinite),
    evenly within each source bin; a zero-width source range is a point mass."""
    out = np.zeros(len(target) - 1)
    if not top > lo:
        out[int(np.clip(np.searchsorted(target, lo, "right") - 1, 0, len(out) - 1))] += counts.sum()
        return out
    source = np.linspace(lo, top, len(counts) + 1)
    # Share of each source bin inside each target interval: clipped cumulative positions, vectorised.
    left, right = source[:-1, None], source[1:, None]
    overlap = np.clip(np.minimum(right, target[None, 1:]) - np.maximum(left, target[None, :-1]), 0, None)
    return np.asarray((counts[:, None] * overlap / (right - left)).sum(axis=0), dtype=np.float64)
