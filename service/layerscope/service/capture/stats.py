"""Summary statistics computed on the device, inside the compiled capture function.

Each tensor becomes three tiny vectors (exact integer counts, float statistics, histogram) plus its
per-unit activity; the engine concatenates them across layers, so a capture returns four small tensors
whatever the number of layers, and only a few hundred bytes per layer cross to the host. `unpack` turns
them back into `Summary` values equal to `domain.summarize` of the same tensor, except that a sampled
histogram (the default for tensors above HISTOGRAM_SAMPLE values) bins a fixed, deterministic sample and
says how many values it binned.

Two backends compute the same numbers. On the CPU the fused kernel (native/summary_op.cc) reads each
tensor once; elsewhere, or where it could not be built, TensorFlow ops do, where the op count matters as
much as the passes over memory: a small layer's summary costs mostly op dispatch, so the common case
(every value finite) takes a short path with few ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from layerscope.service.domain.summary import HISTOGRAM_BINS, HISTOGRAM_SAMPLE, Summary

COUNTS = 7  # count, zeros, nan, posinf, neginf, finite, values binned (-1: every finite value)
FLOATS = 5  # mean, std, min, max, histogram top
EVERY_VALUE = -1


@dataclass(frozen=True)
class _Prepared:
    flat: tf.Tensor
    total: tf.Tensor
    activity: tf.Tensor
    units: int


Packed = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]


def summarize_tensors(
    tensors: list[tf.Tensor], masked: bool, exact: bool = False, fused: Any = None
) -> tuple[Packed, tf.Tensor]:
    """The statistics of every tensor, packed into four tensors (counts, floats, histograms, activity),
    and whether every tensor was finite.

    `fused` is the loaded kernel module (None: TensorFlow ops). `exact` bins every value instead of a
    sample. With TensorFlow ops the short path (`masked=False`) assumes finite values: a finite sum proves
    them finite, since NaN and Inf propagate into it, and when one is not the engine runs the masked
    variant instead. Two separate functions trace far faster than one with a condition, which a model of
    hundreds of layers needs. The kernel handles non-finite values itself, so it never asks for a rerun.
    """
    if not tensors:
        empty = tf.zeros([0])
        return (tf.zeros([0], tf.int64), empty, tf.zeros([0], tf.int64), empty), tf.constant(True)
    if fused is not None:
        return _fused_stats(tensors, fused, exact), tf.constant(True)
    prepared = [_prepare(t) for t in tensors]
    all_finite = tf.reduce_all(tf.math.is_finite(tf.stack([p.total for p in prepared])))
    stats = [
        _masked_stats(p.flat, p.units, exact) if masked else _finite_stats(p.flat, p.total, p.units, exact)
        for p in prepared
    ]
    counts, floats, histograms = _concat(stats)
    return (counts, floats, histograms, tf.concat([p.activity for p in prepared], 0)), all_finite


def _fused_stats(tensors: list[tf.Tensor], fused: Any, exact: bool) -> Packed:
    parts = []
    for tensor in tensors:
        counts, floats, histogram, activity = fused.layerscope_summary(
            tf.cast(tensor, tf.float32), bins=HISTOGRAM_BINS, sample=0 if exact else HISTOGRAM_SAMPLE
        )
        parts.append((counts, floats, histogram, activity[: activity_size(tensor)]))
    counts, floats, histograms, activities = zip(*parts, strict=True)
    return tf.concat(counts, 0), tf.concat(floats, 0), tf.concat(histograms, 0), tf.concat(activities, 0)


def _prepare(x: tf.Tensor) -> _Prepared:
    x = tf.cast(x, tf.float32)
    flat = tf.reshape(x, [-1])
    return _Prepared(flat, tf.reduce_sum(flat), _activity(x), max(activity_size(x), 1))


def _concat(stats: list[tuple[tf.Tensor, tf.Tensor, tf.Tensor]]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    counts, floats, histograms = zip(*stats, strict=True)
    return tf.concat(counts, 0), tf.concat(floats, 0), tf.concat(histograms, 0)


def _finite_stats(flat: tf.Tensor, total: tf.Tensor, units: int, exact: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    count = tf.size(flat, out_type=tf.int64)
    n = tf.cast(tf.maximum(count, 1), tf.float64)
    mean = tf.cast(total, tf.float64) / n
    # Squares of the distance to the first value: with a mean far from zero next to a small spread,
    # sum(x^2)/n - mean^2 cancels to noise in float32. A threaded reduction (a BLAS dot runs on one core).
    pivot = tf.concat([flat[:1], tf.zeros([1])], 0)[0]
    shift = tf.cast(pivot, tf.float64) - mean
    squares = tf.cast(tf.reduce_sum(tf.square(flat - pivot)), tf.float64)
    std = tf.sqrt(tf.maximum(squares / n - shift * shift, 0.0))
    low, high = tf.reduce_min(flat), tf.reduce_max(flat)
    zeros = count - tf.cast(tf.reduce_sum(tf.cast(tf.not_equal(flat, 0.0), tf.int32)), tf.int64)
    # When a value is not finite these results are thrown away, but the histogram op still needs a sane range.
    low = tf.where(tf.math.is_finite(low), low, 0.0)
    top = tf.where(tf.math.is_finite(high) & (high > low), high, _past(low))
    sample, binned = _sample(flat, units, exact)
    histogram = _histogram(sample, low, top)
    none = tf.zeros([], tf.int64)
    counts = tf.stack([count, zeros, none, none, none, count, binned])
    floats = tf.stack([tf.cast(mean, tf.float32), tf.cast(std, tf.float32), low, high, top])
    return counts, floats, histogram


def _masked_stats(flat: tf.Tensor, units: int, exact: bool) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
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
    sample, binned = _sample(flat, units, exact)
    sample_finite = tf.math.is_finite(sample)
    histogram = _histogram(tf.where(sample_finite, sample, low), low, top)
    parked = tf.size(sample, out_type=tf.int64) - _count(sample_finite)
    histogram -= tf.one_hot(0, HISTOGRAM_BINS, dtype=tf.int64) * parked
    binned = tf.where(binned == EVERY_VALUE, binned, binned - parked)
    counts = tf.stack([count, zeros, nan, posinf, count - n_finite - nan - posinf, n_finite, binned])
    return counts, tf.stack([mean, std, low, high, top]), histogram


def _sample(flat: tf.Tensor, units: int, exact: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """The values the histogram bins, and how many (EVERY_VALUE when all of them).

    Above HISTOGRAM_SAMPLE values, every stride-th value from the first, the stride coprime with the unit
    count (one more than a multiple of it when it can be): consecutive picks then step through all units
    (channels), where a plain n // sample stride can fall on a single channel of an NHWC tensor every time.
    """
    if exact:
        return flat, tf.constant(EVERY_VALUE, tf.int64)
    n = tf.size(flat)
    most = n // HISTOGRAM_SAMPLE  # the widest stride that still bins HISTOGRAM_SAMPLE values
    # Below `units`, the widest stride coprime with it (a table made when tracing, capped for very wide
    # layers, where a narrower stride only bins more values): picks still visit every unit.
    table = _coprime_floor(units, min(units, 4096))
    stride = tf.where(
        most > units,
        (most - 1) // units * units + 1,
        tf.gather(table, tf.clip_by_value(most, 1, int(table.shape[0]) - 1)),
    )
    sample = tf.strided_slice(flat, [0], [n], tf.reshape(stride, [1]))
    binned = tf.where(stride > 1, tf.size(sample, out_type=tf.int64), tf.constant(EVERY_VALUE, tf.int64))
    return sample, binned


def _coprime_floor(units: int, size: int) -> tf.Tensor:
    """Entry m: the largest stride <= m that shares no factor with `units` (1 for m = 0)."""
    table = [1]
    for m in range(1, size + 1):
        table.append(m if math.gcd(m, units) == 1 else table[-1])
    return tf.constant(table)


def _histogram(values: tf.Tensor, low: tf.Tensor, top: tf.Tensor) -> tf.Tensor:
    """Counts in HISTOGRAM_BINS equal bins over [low, top], the top edge in the last bin, as NumPy counts them.

    As NumPy does, the index is estimated in float64 and corrected against the float64 edges (a value within
    an ulp of an edge would otherwise fall in the neighbouring bin, and a range wider than the largest float
    would overflow). Unlike tf.histogram_fixed_width this never raises on NaN (those results are discarded
    anyway), and bincount is the faster of the two on CPU.
    """
    x, low, top = tf.cast(values, tf.float64), tf.cast(low, tf.float64), tf.cast(top, tf.float64)
    step = (top - low) / HISTOGRAM_BINS
    edges = tf.concat([tf.range(HISTOGRAM_BINS, dtype=tf.float64) * step + low, tf.stack([top, top])], 0)
    # Every finite value is >= low here, so truncating toward zero is the floor. The short path meets NaN and
    # Inf before it knows to discard the result: the clips keep them in range (bincount would raise).
    last = HISTOGRAM_BINS - 1
    index = tf.clip_by_value(tf.cast((x - low) * (HISTOGRAM_BINS / (top - low)), tf.int32), 0, last)
    index -= tf.cast(x < tf.gather(edges, index), tf.int32)
    index += tf.cast((x >= tf.gather(edges, index + 1)) & (index != last), tf.int32)
    index = tf.clip_by_value(index, 0, last)
    return tf.math.bincount(index, minlength=HISTOGRAM_BINS, maxlength=HISTOGRAM_BINS, dtype=tf.int64)


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
    """The host side of `summarize_tensors`: its four concatenated vectors (counts, floats, histograms, unit
    activities) split back into one `Summary` per tensor, in the order the tensors were given.

    `activity_sizes` are the tensors' `activity_size`s, known when tracing: unit activities are the only
    part of variable length. Counts stay exact integers; a histogram binned from every value says so with
    `histogram_sample=None`, one binned from a strided sample gives the sample's size.
    """
    # One `tolist` per vector converts in C: a Python call per value (1,650 unit activities on the small CNN)
    # was a sixth of its all-layer capture.
    counts, floats, histograms, activities = (np.asarray(v).tolist() for v in packed)
    summaries = []
    offset = 0
    for i, size in enumerate(activity_sizes):
        c = counts[i * COUNTS : (i + 1) * COUNTS]
        f = floats[i * FLOATS : (i + 1) * FLOATS]
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
                histogram=tuple(histograms[i * HISTOGRAM_BINS : (i + 1) * HISTOGRAM_BINS]),
                histogram_range=(f[2], f[4]),
                unit_activity=tuple(activities[offset : offset + size]),
                histogram_sample=None if c[6] == EVERY_VALUE else c[6],
            )
        )
        offset += size
    return summaries


def frozen_histogram(x: tf.Tensor, edges: tuple[float, ...]) -> tf.Tensor:
    """Counts of the finite values of `x` (a fixed strided sample above HISTOGRAM_SAMPLE values, as the
    sampled histogram takes) on fixed edges: [below edges[0], each bin, at or above edges[-1], zeros]."""
    flat = tf.reshape(tf.cast(x, tf.float32), [-1])
    sample, _ = _sample(flat, max(activity_size(x), 1), exact=False)
    sample = tf.reshape(sample, [-1])  # the strided sample's length is only known when it runs
    finite = tf.boolean_mask(sample, tf.math.is_finite(sample))
    buckets = tf.raw_ops.Bucketize(input=finite, boundaries=[float(e) for e in edges])
    counts = tf.math.bincount(buckets, minlength=len(edges) + 1, maxlength=len(edges) + 1, dtype=tf.int64)
    zeros = tf.reduce_sum(tf.cast(tf.equal(finite, 0.0), tf.int64))
    return tf.concat([counts, tf.reshape(zeros, [1])], 0)
