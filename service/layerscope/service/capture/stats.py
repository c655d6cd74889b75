"""Summary statistics computed on the device, inside the compiled capture function.

Each tensor becomes three tiny vectors (exact integer counts, float statistics, histogram) plus its
per-unit activity; the engine concatenates them across layers, so a capture returns four small tensors
whatever the number of layers, and only a few hundred bytes per layer cross to the host. `unpack` turns
them back into `Summary` values equal to `domain.summarize` of the same tensor.

The op count matters as much as the passes over memory: on a CPU, a small layer's summary costs mostly
op dispatch, so the common case (every value finite) takes a short path with few ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from layerscope.service.domain.summary import HISTOGRAM_BINS, Summary

COUNTS = 6  # count, zeros, nan, posinf, neginf, finite
FLOATS = 5  # mean, std, min, max, histogram top


@dataclass(frozen=True)
class _Prepared:
    flat: tf.Tensor
    total: tf.Tensor
    activity: tf.Tensor


def summarize_tensors(
    tensors: list[tf.Tensor], masked: bool
) -> tuple[tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]:
    """The statistics of every tensor, packed into four tensors (counts, floats, histograms, activity),
    and whether every tensor was finite.

    The short path (`masked=False`) assumes finite values: a finite sum proves them finite, since NaN and
    Inf propagate into it, and when one is not the engine runs the masked variant instead. Two separate
    functions trace far faster than one with a condition, which a model of hundreds of layers needs.
    """
    if not tensors:
        empty = tf.zeros([0])
        return (tf.zeros([0], tf.int64), empty, tf.zeros([0], tf.int64), empty), tf.constant(True)
    prepared = [_prepare(t) for t in tensors]
    all_finite = tf.reduce_all(tf.math.is_finite(tf.stack([p.total for p in prepared])))
    stats = [_masked_stats(p.flat) if masked else _finite_stats(p.flat, p.total) for p in prepared]
    counts, floats, histograms = _concat(stats)
    return (counts, floats, histograms, tf.concat([p.activity for p in prepared], 0)), all_finite


def _prepare(x: tf.Tensor) -> _Prepared:
    x = tf.cast(x, tf.float32)
    flat = tf.reshape(x, [-1])
    return _Prepared(flat, tf.reduce_sum(flat), _activity(x))


def _concat(stats: list[tuple[tf.Tensor, tf.Tensor, tf.Tensor]]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    counts, floats, histograms = zip(*stats, strict=True)
    return tf.concat(counts, 0), tf.concat(floats, 0), tf.concat(histograms, 0)


def _finite_stats(flat: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    count = tf.size(flat, out_type=tf.int64)
    n = tf.cast(tf.maximum(count, 1), tf.float64)
    mean = tf.cast(total, tf.float64) / n
    # A threaded reduction of the squares (a BLAS dot runs on one core, 3x slower here); the shift by
    # the mean happens after, in float64.
    squares = tf.cast(tf.reduce_sum(tf.square(flat)), tf.float64)
    std = tf.sqrt(tf.maximum(squares / n - mean * mean, 0.0))
    low, high = tf.reduce_min(flat), tf.reduce_max(flat)
    zeros = count - tf.cast(tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), tf.int32)), tf.int64)
    # When a value is not finite these results are thrown away, but the histogram op still needs a sane range.
    low = tf.where(tf.math.is_finite(low), low, 0.0)
    top = tf.where(tf.math.is_finite(high) & (high > low), high, _past(low))
    histogram = _histogram(flat, low, top)
    none = tf.zeros([], tf.int64)
    counts = tf.stack([count, zeros, none, none, none, count])
    floats = tf.stack([tf.cast(mean, tf.float32), tf.cast(std, tf.float32), low, high, top])
    return counts, floats, histogram


def _masked_stats(flat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    finite = tf.math.is_finite(flat)
    count = tf.size(flat, out_type=tf.int64)
    n_finite = _count(finite)
    nan = _count(tf.math.is_nan(flat))
    posinf = _count(tf.equal(flat, np.inf))
    zeros = _count(tf.equal(flat, 0.0))
    denominator = tf.cast(tf.maximum(n_finite, 1), tf.float32)
    mean = tf.reduce_sum(tf.where(finite, flat, 0.0)) / denominator
    std = tf.sqrt(tf.reduce_sum(tf.square(tf.where(finite, flat - mean, 0.0))) / denominator)
    has_finite = n_finite > 0
    low = tf.where(has_finite, tf.reduce_min(tf.where(finite, flat, np.inf)), 0.0)
    high = tf.where(has_finite, tf.reduce_max(tf.where(finite, flat, -np.inf)), 0.0)
    top = tf.where(high > low, high, _past(low))
    # Non-finite values are parked at `low` for the histogram, then taken back out of bin 0.
    parked = tf.where(finite, flat, low)
    histogram = _histogram(parked, low, top)
    histogram -= tf.one_hot(0, HISTOGRAM_BINS, dtype=tf.int64) * (count - n_finite)
    counts = tf.stack([count, zeros, nan, posinf, count - n_finite - nan - posinf, n_finite])
    return counts, tf.stack([mean, std, low, high, top]), histogram


def _histogram(values: tf.Tensor, low: tf.Tensor, top: tf.Tensor) -> tf.Tensor:
    """Counts in HISTOGRAM_BINS equal bins over [low, top], the top edge in the last bin, as NumPy does.

    Unlike tf.histogram_fixed_width this never raises on NaN (those results are discarded anyway), and
    bincount is the faster of the two on CPU.
    """
    # Every value is >= low here, so truncating toward zero is the floor; NaN casts to a negative the clip
    # drops (bincount would raise on it, and the short path meets NaN before it knows to discard the result).
    bins = tf.clip_by_value(tf.cast((values - low) * (HISTOGRAM_BINS / (top - low)), tf.int32), 0, HISTOGRAM_BINS - 1)
    return tf.math.bincount(bins, minlength=HISTOGRAM_BINS, maxlength=HISTOGRAM_BINS, dtype=tf.int64)


def _past(low: tf.Tensor) -> tf.Tensor:
    """The top of a constant tensor's bin range, as in `domain.summarize`."""
    return low + tf.maximum(1.0, tf.abs(low) * 1e-6)


def _count(mask: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(mask, tf.int64))


def _activity(x: tf.Tensor) -> tf.Tensor:
    """Per unit (last axis): the fraction of positions, batch and spatial, where the unit is > 0."""
    if x.shape.rank == 0 or x.shape[-1] is None:  # no unit axis the host could size the result by
        return tf.zeros([0], tf.float32)
    units = tf.reshape(x, [-1, tf.shape(x)[-1]])
    return tf.reduce_mean(tf.cast(units > 0, tf.float32), axis=0)


def activity_size(x: tf.Tensor) -> int:
    """How many unit-activity values `summarize_tensor` returns for `x` (known when tracing)."""
    return 0 if x.shape.rank == 0 or x.shape[-1] is None else int(x.shape[-1])


def unpack(packed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], activity_sizes: list[int]) -> list[Summary]:
    counts, floats, histograms, activities = packed
    summaries = []
    offset = 0
    for i, size in enumerate(activity_sizes):
        c = [int(v) for v in counts[i * COUNTS : (i + 1) * COUNTS]]
        f = [float(v) for v in floats[i * FLOATS : (i + 1) * FLOATS]]
        summaries.append(
            Summary(
                count=c[0],
                mean=f[0],
                std=f[1],
                min=f[2],
                max=f[3],
                zero_fraction=c[1] / c[0] if c[0] else 0.0,
                nan=c[2],
                posinf=c[3],
                neginf=c[4],
                histogram=tuple(int(h) for h in histograms[i * HISTOGRAM_BINS : (i + 1) * HISTOGRAM_BINS]),
                histogram_range=(f[2], f[4]),
                unit_activity=tuple(float(a) for a in activities[offset : offset + size]),
            )
        )
        offset += size
    return summaries
