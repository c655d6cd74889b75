"""The live-traffic drift test by simulation: false alarms on stationary traffic, and detection delay.

    .venv/bin/python bench/bench_drift.py [--quick] [--windows 10000] [--json out.json]

What the server does, step by step, on real activations: the bench models of bench_capture.py (a small CNN and
a 12-Conv2D 64x64 CNN) run through `CaptureEngine.run` with the request a sampled Predict sends
(`CaptureRequest(inputs, LIVE_SELECTION, frozen_edges=...)`, default "sampled" statistics, the fused kernel
loaded as the server loads it) on batches of 32 stationary images (uniform [0, 1) pixels): one capture is one
Predict request of batch 32. Each request's images come from its own seed, so the same images can be sent
again (on other edges, or as requests of 8).

- References, as `ModelMonitor._collect` makes them: a version's first EDGE (min(50, 200 // 4)) sampled
  requests run with the plain LIVE_SELECTION and choose each layer's edges (`choose_edges` over their compact
  summaries); the next `reference_requests` (200) run with those edges frozen, so the engine counts each
  layer's activation on them (`result.frozen`), and their features (`features(summary, edges, counts)`) and
  weights (`summary.count`) give the reference (`reference_from_rows`, seeded as the monitor seeds it).
  Every reference is also made by a `ModelMonitor` fed the same samples, and must come out identical. Several
  references from disjoint parts of the pool, since the null the test is calibrated for includes the
  reference's own noise (and its edges).
- Held-out requests (no reference saw them) are sent once per reference, counted on that reference's edges.
  Stationary windows of n sampled requests (n = 10, 20, 60; 5 is below MIN_WINDOW_REQUESTS and must not be
  judged: checked) are drawn by bootstrap from them and judged with `judge` at the server's defaults (window
  300 s, one false alarm per model per week: alpha per window 300/604800 for the model, Bonferroni over its L
  layers). A window is a model-level false alarm when any layer is drifting. Its per-layer sums are Σ w·x,
  Σ w and the count over its requests, which is what `LayerWindow.add(summary, edges, None, counts)`
  accumulates (checked against `add` on real summaries and counts at the start).
- Because that alpha is ~5e-4 per window, the tail is also read where it can be measured: the share of
  windows whose largest layer score exceeds 0.5 and 0.7, beside what the fitted null c * chi2(nu) predicts
  for it, and the same windows re-judged at a per-model alpha of 0.01 and 0.05 (and each layer at 1% and
  0.1%), where a few thousand windows estimate the rate.
- Detection: the same engine on shifted inputs (brightness, contrast, a zeroed channel or region, noise),
  counted on the first reference's edges, windows drawn from those requests and judged against it: the
  probability a window is flagged, the expected windows to first detection (1/p: windows are independent),
  and which layer the window names first (model order: the first conv is expected).
- Batch size, which is no shift of the data: held-out images sent again as requests of 8 and judged against
  the first reference (must not be flagged), and the mirror case, a reference made from requests of 8 (other
  images of the same distribution) judging windows of held-out requests of 32.

A bootstrap pool of H held-out requests adds its own sampling error (1/H) to every window's mean, so
simulated windows look a little less stationary than fresh traffic would: the inflation of the test's
variance, 1/H over (1/n + 1/m), is printed beside each table (it makes the raw figures conservative), and
"corrected" figures scale each statistic down by it. The 95% intervals count windows as independent draws;
windows judged against one reference share that reference's errors, so with 2-4 references the spread of the
per-reference rates (printed) is the truer uncertainty. A last table, a diagnosis rather than what the service
does, re-judges the same windows against other nulls: fitted at the judged window's n instead of
BOOTSTRAP_WINDOW; fitted with each bootstrap round's variance re-estimated ("studentized"); and the weighted
chi-square sum the statistic follows when window means are normal ("mixture": the eigenvalues of the
reference's standardised feature covariance, its tail by a saddlepoint approximation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from layerscope.service.domain.summary import Summary
from layerscope.service.monitoring.compact import CompactSummary
from layerscope.service.monitoring.drift import (
    MIN_WINDOW_REQUESTS,
    SECONDS_PER_WEEK,
    TAIL_CORRECTION,
    Reference,
    chi2_quantile,
    judge,
    reference_from_rows,
)
from layerscope.service.monitoring.model_monitor import (
    EDGE_REQUESTS,
    FrozenEdges,
    ModelMonitor,
    MonitorConfig,
    Sample,
)
from layerscope.service.monitoring.projection import choose_edges
from layerscope.service.monitoring.window import LayerWindow, Window, features

WINDOW_SECONDS = 300.0  # the server's default monitor_window_seconds
FALSE_ALARMS_PER_WEEK = 1.0  # the server's default monitor_false_alarms_per_week
REFERENCE_REQUESTS = 200  # the server's default monitor_reference_requests
SAMPLE_RATE = 0.05  # the server's default monitor_sample_rate
EDGE = min(EDGE_REQUESTS, max(2, REFERENCE_REQUESTS // 4))
"""Requests that choose a version's edges before its reference requests (as `ModelMonitor._collect`)."""
CONFIG = MonitorConfig(WINDOW_SECONDS, REFERENCE_REQUESTS, FALSE_ALARMS_PER_WEEK, "bench")
WINDOWS_PER_WEEK = SECONDS_PER_WEEK / WINDOW_SECONDS
ALPHA_MODEL = FALSE_ALARMS_PER_WEEK / WINDOWS_PER_WEEK
BATCH = 32
SMALL_BATCH = 8
"""Not a shift of the data: the same images in requests of 8 instead of 32 (a change in the batch-size mix)."""
SIZES = (10, 20, 60)
UNJUDGED = 5
"""A window size below MIN_WINDOW_REQUESTS: such windows must not be judged."""
LARGER_ALPHAS = (0.01, 0.05)
LAYER_ALPHAS = (0.01, 0.001)
TAIL_SCORES = (0.5, 0.7)
POOL, SMALL_REFERENCE, SHIFTED = 0, 1, 10
"""Image streams: the stationary pool, the requests of 8 a batch-8 reference is made from, each shift's."""

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Request = Callable[[int], np.ndarray]
"""Request index -> its images."""


def shifts(channels: int) -> dict[str, Shift]:
    """Input shifts to detect; "zeroed" is the first channel of a colour model, else the top-left quarter."""

    def zeroed(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = x.copy()
        if channels > 1:
            x[..., 0] = 0.0
        else:
            x[:, : x.shape[1] // 2, : x.shape[2] // 2, :] = 0.0
        return x

    return {
        "brightness +0.002": lambda x, rng: x + 0.002,  # below and near the limit of detection
        "brightness +0.005": lambda x, rng: x + 0.005,
        "brightness +0.02": lambda x, rng: x + 0.02,
        "brightness +0.1": lambda x, rng: x + 0.1,
        "brightness +0.3": lambda x, rng: x + 0.3,
        "contrast x1.2": lambda x, rng: (x - 0.5) * 1.2 + 0.5,
        "contrast x1.5": lambda x, rng: (x - 0.5) * 1.5 + 0.5,
        "channel 0 zeroed" if channels > 1 else "quarter zeroed": zeroed,
        "noise sd 0.1": lambda x, rng: x + rng.normal(0.0, 0.1, x.shape).astype("float32"),
    }


# -- the TensorFlow part: real summaries and device counts -------------------------------------------------------


@dataclass
class Counted:
    """Requests counted on one set of frozen edges: per layer, each request's features and weight."""

    edges: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    """Capture point -> one row of `features(summary, edges, counts)` per request."""
    weights: dict[str, np.ndarray]
    """Capture point -> each request's weight, its number of values (`summary.count`)."""
    units: dict[str, int]
    first: list[tuple[dict[str, Summary], dict[str, np.ndarray]]] = field(default_factory=list)
    """The first requests as the engine returned them (summaries, counts), for the checks."""

    @property
    def size(self) -> int:
        return len(next(iter(self.weights.values())))


def images(engine: Any, seed: int, stream: int, index: int, shift: Shift | None = None) -> np.ndarray:
    """The images of one request of `BATCH`: the same for the same (seed, stream, index)."""
    spec = engine.inputs[0]
    rng = np.random.default_rng((seed, stream, index))
    x = rng.random((BATCH, *(d or 1 for d in spec.shape[1:])), dtype=np.float32)
    return x if shift is None else shift(x, rng).astype("float32")


def split(x: np.ndarray, part: int) -> np.ndarray:
    """Part `part` of a request's images sent as a request of SMALL_BATCH."""
    return x[part * SMALL_BATCH : (part + 1) * SMALL_BATCH]


def frozen(edges: dict[str, np.ndarray]) -> FrozenEdges:
    """The edges as a sampled request carries them to the engine."""
    return tuple((point, tuple(float(v) for v in values)) for point, values in edges.items())


def capture(engine: Any, x: np.ndarray, edges: FrozenEdges = ()) -> tuple[dict[str, Summary], dict[str, np.ndarray]]:
    """One sampled request as the inspector runs it: activation summaries, and counts on `edges`."""
    from layerscope.service.domain.capture import LIVE_SELECTION, CaptureRequest

    result = engine.run(CaptureRequest({engine.inputs[0].name: x}, LIVE_SELECTION, frozen_edges=edges)).result
    summaries = {p: kinds["activation"] for p, kinds in result.summaries.items() if "activation" in kinds}
    return summaries, dict(result.frozen)


def count_on(engine: Any, requests: Iterable[np.ndarray], edges: dict[str, np.ndarray], keep: int = 0) -> Counted:
    """Each request sent with `edges` frozen; its features from the device's counts on them."""
    sent = frozen(edges)
    rows: dict[str, list[np.ndarray]] = {p: [] for p in edges}
    weights: dict[str, list[float]] = {p: [] for p in edges}
    units: dict[str, int] = {}
    first = []
    for x in requests:
        summaries, counts = capture(engine, x, sent)
        if len(first) < keep:
            first.append((summaries, counts))
        for point, e in edges.items():
            summary = summaries[point]
            rows[point].append(features(summary, e, counts[point]))
            weights[point].append(float(summary.count))
            units[point] = len(summary.unit_activity)
    return Counted(
        edges, {p: np.stack(v) for p, v in rows.items()}, {p: np.array(v) for p, v in weights.items()}, units, first
    )


def unmeasured(point: str, summary: Summary) -> tuple[float | None, float | None]:
    return None, None


def make_reference(engine: Any, tag: str, request: Request) -> tuple[Reference, Counted]:
    """A reference as the server makes it from a version's first sampled requests `request(0), request(1)...`:
    the first EDGE choose the edges (plain capture), the next REFERENCE_REQUESTS are counted on them. Checked
    against a `ModelMonitor` fed the same samples."""
    model = engine.model.name
    plain = [capture(engine, request(i))[0] for i in range(EDGE)]
    compact = [{p: CompactSummary.of(s) for p, s in summaries.items()} for summaries in plain]
    edges = {p: choose_edges([c[p].summary() for c in compact if p in c]) for p in compact[0]}
    counted = count_on(engine, (request(EDGE + i) for i in range(REFERENCE_REQUESTS)), edges, REFERENCE_REQUESTS)
    layers = {
        p: reference_from_rows(counted.rows[p], counted.weights[p], e, counted.units[p], zlib.crc32(p.encode()))
        for p, e in edges.items()
    }
    reference = Reference(f"ref-{tag}", model, 1, datetime.now(UTC), "traffic", REFERENCE_REQUESTS, layers)
    # The server's own path on the same samples must give the same reference.
    monitor = ModelMonitor(model, 1, SAMPLE_RATE, CONFIG)
    for summaries in plain:
        monitor.add(Sample(summaries, 0, unmeasured))
    assert monitor.frozen_edges == frozen(edges), "the monitor chose other edges"
    for summaries, counts in counted.first:
        monitor.add(Sample(summaries, 0, unmeasured, counts=counts, edges=monitor.frozen_edges))
    theirs = monitor.reference_ready()
    assert theirs is not None and list(theirs.layers) == list(layers), "the monitor made no reference"
    for point, ours in layers.items():
        other = theirs.layers[point]
        for name in ("edges", "mean", "variance"):
            np.testing.assert_array_equal(getattr(other, name), getattr(ours, name), err_msg=f"{point} {name}")
        assert (other.units, other.scale, other.dof, other.weight, other.dead_unit_fraction) == (
            ours.units,
            ours.scale,
            ours.dof,
            ours.weight,
            ours.dead_unit_fraction,
        ), point
    counted.first = counted.first[:7]
    return reference, counted


def build_engines(quick: bool) -> list[tuple[Any, dict[str, int]]]:
    """(engine, plan) per bench model: references, held-out requests, shifted requests per shift, and held-out
    requests sent again for the batch-size cases."""
    from layerscope.service.runtime.quiet_start import start_tensorflow

    start_tensorflow()
    import keras

    from bench.bench_capture import deep_cnn, small_cnn
    from layerscope.service.capture.engine import CaptureEngine
    from layerscope.service.runtime.native import SummaryOpLoader

    summary_op = SummaryOpLoader()
    summary_op.load()
    print(f"fused statistics kernel: {summary_op.reason}", flush=True)
    if quick:
        plans = [
            (small_cnn, {"references": 2, "held_out": 400, "shifted": 80, "batch_pool": 100}),
            (deep_cnn, {"references": 1, "held_out": 150, "shifted": 30, "batch_pool": 40}),
        ]
    else:
        plans = [
            (small_cnn, {"references": 4, "held_out": 800, "shifted": 150, "batch_pool": 200}),
            (deep_cnn, {"references": 2, "held_out": 300, "shifted": 50, "batch_pool": 80}),
        ]
    engines = []
    for build, plan in plans:
        keras.backend.clear_session()  # layer names start afresh per model: conv2d is each model's first conv
        keras.utils.set_random_seed(0)
        engines.append((CaptureEngine(build(), summary_op=summary_op), plan))
    return engines


# -- the pure part: windows, judging -----------------------------------------------------------------------------


def draws(rng: np.random.Generator, held: int, count: int, n: int) -> np.ndarray:
    """`count` windows of n requests drawn with replacement from `held`, as draw counts per request."""
    index = rng.integers(0, held, (count, n))
    out = np.zeros((count, held))
    np.add.at(out, (np.repeat(np.arange(count), n), index.ravel()), 1.0)
    return out


def window_sums(counted: Counted, drawn: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer, each drawn window's Σ w·x and Σ w: what `LayerWindow.add` accumulates."""
    return {
        p: (drawn @ (counted.weights[p][:, None] * counted.rows[p]), drawn @ counted.weights[p]) for p in counted.rows
    }


def check_sums_match_add(counted: Counted, reference: Reference) -> None:
    """The shortcut (a window's sums as sums over its requests' rows) against what `LayerWindow.add` makes of
    the same requests' summaries and counts, as `ModelMonitor.add` calls it."""
    k = len(counted.first)
    drawn = np.zeros((1, counted.size))
    drawn[0, :k] = 1.0
    sums = window_sums(counted, drawn)
    for point, ref in reference.layers.items():
        layer = LayerWindow()
        for summaries, counts in counted.first:
            layer.add(summaries[point], ref.edges, None, counts[point])
        feature_sum, weight = sums[point]
        squares = drawn @ (counted.weights[point][:, None] * counted.rows[point] ** 2)
        np.testing.assert_allclose(layer.feature_sum, feature_sum[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layer.feature_squares, squares[0], rtol=1e-12, atol=1e-12)
        assert layer.feature_weight == weight[0] and layer.featured == k == layer.requests


def window_of(reference: Reference, sums: dict[str, tuple[np.ndarray, float]], n: int) -> Window:
    now = datetime.now(UTC)
    layers = {
        p: LayerWindow(requests=n, featured=n, feature_sum=s, feature_weight=float(w)) for p, (s, w) in sums.items()
    }
    edges = {p: r.edges for p, r in reference.layers.items()}
    return Window("w-sim", reference.model, 1, "bench", now, now, reference.reference_id, layers, edges=edges)


def simulate(reference: Reference, counted: Counted, n: int, windows: int, rng: np.random.Generator) -> dict[str, Any]:
    """`windows` windows of n requests drawn (with replacement) from `counted`, each judged at the defaults.

    Returns per window and layer the statistic and the default score, and per window the layers drifting
    (model order), and how many windows `judge` judged at all."""
    points = list(reference.layers)
    statistic = np.zeros((windows, len(points)))
    score = np.zeros((windows, len(points)))
    drifting: list[list[str]] = []
    parts: list[str] = []
    judged = 0
    chunk = 500
    for start in range(0, windows, chunk):
        count = min(chunk, windows - start)
        sums = window_sums(counted, draws(rng, counted.size, count, n))
        for w in range(count):
            window = window_of(reference, {p: (sums[p][0][w], sums[p][1][w]) for p in points}, n)
            judge(window, reference, WINDOWS_PER_WEEK, FALSE_ALARMS_PER_WEEK)
            judged += any(d.threshold > 0 for d in window.drift.values())
            for j, p in enumerate(points):
                statistic[start + w, j] = window.drift[p].statistic
                score[start + w, j] = window.drift[p].score
            drifting.append(window.drifting)
            parts.extend(f"{p}:{window.drift[p].part}" for p in window.drifting)
    return {
        "statistic": statistic,
        "score": score,
        "drifting": drifting,
        "points": points,
        "parts": parts,
        "judged": judged,
        "n": n,
    }


def thresholds(reference: Reference, alpha_layer: float) -> np.ndarray:
    """Each layer's threshold at a per-layer alpha: what `judge_layer` computes."""
    # As `judge` does: the level divided by TAIL_CORRECTION, the tail the fitted null is known to miss.
    level = alpha_layer / TAIL_CORRECTION
    return np.array([r.scale * chi2_quantile(r.dof, level) for r in reference.layers.values()])


def rejudge_matches(reference: Reference, counted: Counted, n: int, alpha_model: float) -> None:
    """Re-judging from the kept statistics agrees with `judge` itself at that alpha (a few windows)."""
    rng = np.random.default_rng(99)
    points = list(reference.layers)
    limit = thresholds(reference, alpha_model / len(points))
    sums = window_sums(counted, draws(rng, counted.size, 20, n))
    for w in range(20):
        window = window_of(reference, {p: (sums[p][0][w], sums[p][1][w]) for p in points}, n)
        judge(window, reference, WINDOWS_PER_WEEK, alpha_model * WINDOWS_PER_WEEK)
        ours = [window.drift[p].statistic >= t for p, t in zip(points, limit, strict=True)]
        assert ours == [window.drift[p].drifting for p in points], (ours, window.drift)


def inflation(counted: Counted, reference: Reference, n: int) -> float:
    """The bootstrap pool's extra variance of a window's mean, 1/H over (1/n + 1/m), in weights."""
    point = next(iter(reference.layers))
    request = float(counted.weights[point].mean())
    return (1 / (counted.size * request)) / (1 / (n * request) + 1 / reference.layers[point].weight)


def chi2_sf(x: float, dof: float) -> float:
    """P(chi2(dof) > x), Wilson and Hilferty's approximation (the inverse of the service's `chi2_quantile`)."""
    k = max(dof, 0.5)
    if x <= 0:
        return 1.0
    z = ((x / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 1.0 - NormalDist().cdf(z)


def nominal_tail(reference: Reference, score: float) -> float:
    """What the fitted nulls c * chi2(nu) say of P(some layer's default score > `score`), layers independent."""
    alpha_layer = ALPHA_MODEL / len(reference.layers)
    p = [chi2_sf(score * chi2_quantile(r.dof, alpha_layer), r.dof) for r in reference.layers.values()]
    return 1.0 - float(np.prod([1.0 - q for q in p]))


def wilson(hits: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if total == 0:
        return 0.0, 1.0
    z, p = 1.96, hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- the study ----------------------------------------------------------------------------------------------------


def study(engine: Any, plan: dict[str, int], windows: int, seed: int) -> dict[str, Any]:
    model = engine.model.name
    rng = np.random.default_rng(seed)
    references, held_out = plan["references"], plan["held_out"]
    block = EDGE + REFERENCE_REQUESTS

    def pool(index: int) -> np.ndarray:
        return images(engine, seed, POOL, index)

    started = time.perf_counter()
    refs, reference_counted = [], []
    for r in range(references):
        reference, counted = make_reference(engine, f"{model}-{r}", lambda i, r=r: pool(r * block + i))
        refs.append(reference)
        reference_counted.append(counted)
    held = [references * block + i for i in range(held_out)]
    held_counted = [count_on(engine, (pool(i) for i in held), edges_of(reference), 7) for reference in refs]
    plain = capture(engine, pool(held[0]))[0]
    assert plain == held_counted[0].first[0][0], "counting on frozen edges changed the summaries"
    for reference, counted in zip(refs, held_counted, strict=True):
        check_sums_match_add(counted, reference)
    capture_seconds = time.perf_counter() - started
    L = len(refs[0].layers)
    print(
        f"{model}: {references} references ({EDGE} + {REFERENCE_REQUESTS} requests of batch {BATCH} each), "
        f"{held_out} held out counted on each reference's edges: {capture_seconds:.1f} s; {L} layers; every "
        "reference identical to ModelMonitor's, window sums identical to LayerWindow.add's",
        flush=True,
    )
    null: dict[int, dict[str, Any]] = {}
    for n in SIZES:
        per_ref = []
        for reference, counted in zip(refs, held_counted, strict=True):
            rejudge_matches(reference, counted, n, LARGER_ALPHAS[-1])
            per_ref.append((reference, simulate(reference, counted, n, windows, rng)))
        spread = inflation(held_counted[0], refs[0], n)
        null[n] = summarize_null(per_ref, n, spread)
        null[n]["refitted"] = refitted(per_ref, reference_counted, spread)
    small = [
        simulate(reference, counted, UNJUDGED, 500, rng) for reference, counted in zip(refs, held_counted, strict=True)
    ]
    unjudged = {
        "n": UNJUDGED,
        "windows": sum(len(sim["drifting"]) for sim in small),
        "judged": sum(sim["judged"] for sim in small),
        "alarms": sum(bool(d) for sim in small for d in sim["drifting"]),
    }
    assert unjudged["judged"] == 0, f"windows of {UNJUDGED} requests were judged"
    # Detection: shifted requests counted on the first reference's edges and judged against it.
    detection = []
    shift_seconds = time.perf_counter()
    channels = int(engine.inputs[0].shape[-1] or 1)
    first_edges = edges_of(refs[0])
    for k, (name, shift) in enumerate(shifts(channels).items()):
        requests = (images(engine, seed, SHIFTED + k, i, shift) for i in range(plan["shifted"]))
        counted = count_on(engine, requests, first_edges)
        for n in SIZES:
            sim = simulate(refs[0], counted, n, min(windows, 1000), rng)
            detection.append(summarize_detection(name, n, sim, refs[0]))
    print(f"{model}: shifted requests captured and judged in {time.perf_counter() - shift_seconds:.1f} s", flush=True)
    # Batch size: the same held-out images in requests of 8 against the first reference; and a reference made
    # from requests of 8 against the held-out requests of 32.
    batch_seconds = time.perf_counter()
    parts = BATCH // SMALL_BATCH
    kept = held[: plan["batch_pool"]]
    eights = count_on(engine, (split(pool(i), part) for i in kept for part in range(parts)), first_edges)
    small_reference, _ = make_reference(
        engine,
        f"{model}-batch{SMALL_BATCH}",
        lambda i: split(images(engine, seed, SMALL_REFERENCE, i // parts), i % parts),
    )
    thirty_twos = count_on(engine, (pool(i) for i in kept), edges_of(small_reference))
    batch = []
    cases = (
        (f"reference {BATCH}, windows {SMALL_BATCH}", refs[0], eights),
        (f"reference {SMALL_BATCH}, windows {BATCH}", small_reference, thirty_twos),
    )
    for label, reference, counted in cases:
        for n in SIZES:
            sim = simulate(reference, counted, n, min(windows, 3000), rng)
            x = summarize_null([(reference, sim)], n, inflation(counted, reference, n))
            batch.append({"case": label, "pool": counted.size, **x})
            if reference is refs[0]:
                detection.append(summarize_detection(f"none, batch {SMALL_BATCH}", n, sim, reference))
    print(
        f"{model}: {len(kept)} held-out requests sent again as {len(kept) * parts} requests of {SMALL_BATCH}, a "
        f"reference of requests of {SMALL_BATCH}: {time.perf_counter() - batch_seconds:.1f} s",
        flush=True,
    )
    layers = [
        {"layer": p, "features": len(r.mean), "units": r.units, "scale": round(r.scale, 4), "dof": round(r.dof, 2)}
        for p, r in refs[0].layers.items()
    ]
    return {
        "model": model,
        "layers": L,
        "references": references,
        "held_out": held_out,
        "capture_seconds": round(capture_seconds, 1),
        "reference_layers": layers,
        "null": null,
        "unjudged": unjudged,
        "detection": detection,
        "batch": batch,
    }


def edges_of(reference: Reference) -> dict[str, np.ndarray]:
    return {p: r.edges for p, r in reference.layers.items()}


def summarize_null(per_ref: list[tuple[Reference, dict[str, Any]]], n: int, spread: float) -> dict[str, Any]:
    """Model-level and per-layer false alarms over every reference's windows, as judged ("raw") and with each
    statistic scaled down by the bootstrap pool's inflation ("corrected": (1/n + 1/m) / (1/n + 1/m + 1/H))."""
    correct = 1 / (1 + spread)
    total = sum(len(sim["drifting"]) for _, sim in per_ref)
    alarms = sum(bool(d) for _, sim in per_ref for d in sim["drifting"])
    default = [thresholds(reference, ALPHA_MODEL / len(reference.layers)) for reference, _ in per_ref]
    corrected = sum(
        int((sim["statistic"] * correct >= limit[None, :]).any(axis=1).sum())
        for (_, sim), limit in zip(per_ref, default, strict=True)
    )
    max_scores = np.concatenate([sim["score"].max(axis=1) for _, sim in per_ref])
    first = Counter(d[0] for _, sim in per_ref for d in sim["drifting"] if d)
    parts = Counter(part for _, sim in per_ref for part in sim["parts"])
    low, high = wilson(alarms, total)
    out: dict[str, Any] = {
        "n": n,
        "windows": total,
        "judged": sum(sim["judged"] for _, sim in per_ref),
        "alarms": alarms,
        "rate": alarms / total,
        "rate_ci95": [low, high],
        "rate_per_reference": [sum(bool(d) for d in sim["drifting"]) / len(sim["drifting"]) for _, sim in per_ref],
        "nominal": ALPHA_MODEL,
        "per_week": alarms / total * WINDOWS_PER_WEEK,
        "per_week_ci95": [low * WINDOWS_PER_WEEK, high * WINDOWS_PER_WEEK],
        "corrected_alarms": corrected,
        "corrected_per_week": corrected / total * WINDOWS_PER_WEEK,
        "max_score": float(max_scores.max()),
        "p99_max_score": float(np.quantile(max_scores, 0.99)),
        "score_at_nominal_quantile": float(np.quantile(max_scores, 1 - ALPHA_MODEL)),
        "median_max_score": float(np.median(max_scores)),
        "first_layers_of_alarms": dict(first.most_common()),
        "layer_parts_in_alarms": dict(parts.most_common()),
        "bootstrap_inflation": spread,
        "tail": {},
        "larger_alpha": {},
        "per_layer": {},
    }
    for t in TAIL_SCORES:
        hits = int((max_scores > t).sum())
        nominal = float(np.mean([nominal_tail(reference, t) for reference, _ in per_ref]))
        out["tail"][str(t)] = {"share": hits / total, "ci95": list(wilson(hits, total)), "nominal": nominal}
    L = len(per_ref[0][1]["points"])
    for alpha in LARGER_ALPHAS:
        hits = {"raw": 0, "corrected": 0}
        layer_hits = {"raw": 0, "corrected": 0}
        for reference, sim in per_ref:
            limit = thresholds(reference, alpha / L)
            for kind, factor in (("raw", 1.0), ("corrected", correct)):
                over = sim["statistic"] * factor >= limit[None, :]
                hits[kind] += int(over.any(axis=1).sum())
                layer_hits[kind] += int(over.sum())
        out["larger_alpha"][str(alpha)] = {
            "model_rate": hits["raw"] / total,
            "ci95": list(wilson(hits["raw"], total)),
            "corrected_model_rate": hits["corrected"] / total,
            "corrected_ci95": list(wilson(hits["corrected"], total)),
            "mean_layer_rate": layer_hits["raw"] / total / L,
            "corrected_mean_layer_rate": layer_hits["corrected"] / total / L,
            "layer_nominal": alpha / L,
        }
    for j, point in enumerate(per_ref[0][1]["points"]):
        row: dict[str, Any] = {}
        for alpha in LAYER_ALPHAS:
            for kind, factor in (("raw", 1.0), ("corrected", correct)):
                hits = sum(
                    int((sim["statistic"][:, j] * factor >= thresholds(reference, alpha)[j]).sum())
                    for reference, sim in per_ref
                )
                row[f"{kind} {alpha}"] = hits / total
        means = [
            float(sim["statistic"][:, j].mean()) / (ref.layers[point].scale * ref.layers[point].dof)
            for ref, sim in per_ref
        ]
        row["mean_over_null_mean"] = float(np.mean(means))
        row["max_score"] = float(max(sim["score"][:, j].max() for _, sim in per_ref))
        out["per_layer"][point] = row
    return out


def refitted(
    per_ref: list[tuple[Reference, dict[str, Any]]], reference_counted: list[Counted], spread: float
) -> dict[str, Any]:
    """Diagnosis, not what the service does: the same windows' statistics against other nulls c * chi2(nu),
    fitted to the reference's own weighted requests as `reference_from_rows` fits them (the heavier of the tail
    and moment fits) but "at n": with bootstrap windows of the judged window's n instead of BOOTSTRAP_WINDOW;
    "studentized": with each bootstrap round's statistic divided by the variance of that round's resampled
    reference instead of the reference's own (so the null carries the noise of a variance estimated from 200
    requests, which the service's fit cannot see). Rates corrected for the pool's inflation."""
    from layerscope.service.monitoring import drift

    n = per_ref[0][1]["n"]
    correct = 1 / (1 + spread)
    saved = drift.BOOTSTRAP_WINDOW
    drift.BOOTSTRAP_WINDOW = n
    try:
        at_n = [
            [
                drift._calibrate(counted.rows[p], counted.weights[p], r.variance, zlib.crc32(p.encode()))
                for p, r in reference.layers.items()
            ]
            for (reference, _), counted in zip(per_ref, reference_counted, strict=True)
        ]
    finally:
        drift.BOOTSTRAP_WINDOW = saved
    studentized = [
        [studentized_fit(counted.rows[p], counted.weights[p], zlib.crc32(p.encode())) for p in reference.layers]
        for (reference, _), counted in zip(per_ref, reference_counted, strict=True)
    ]
    spectra = [
        [spectrum(counted.rows[p], counted.weights[p], r.variance) for p, r in reference.layers.items()]
        for (reference, _), counted in zip(per_ref, reference_counted, strict=True)
    ]
    total = sum(len(sim["drifting"]) for _, sim in per_ref)
    out: dict[str, Any] = {}
    for name in ("at n", "studentized", "mixture"):
        out[name] = {}
        for alpha in (ALPHA_MODEL, *LARGER_ALPHAS):
            hits = 0
            for i, (_, sim) in enumerate(per_ref):
                L = len(sim["points"])
                if name == "mixture":
                    limit = np.array([mixture_quantile(lam, alpha / L) for lam in spectra[i]])
                else:
                    fit = (at_n if name == "at n" else studentized)[i]
                    limit = np.array([c * chi2_quantile(nu, alpha / L) for c, nu in fit])
                hits += int((sim["statistic"] * correct >= limit[None, :]).any(axis=1).sum())
            out[name][f"{alpha:.3g}"] = {"rate": hits / total, "ci95": list(wilson(hits, total)), "nominal": alpha}
    return out


def spectrum(rows: np.ndarray, weights: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Eigenvalues of the features' correlation as the test standardises them (the weighted covariance per
    unit of weight over the reference's variance): with normal window means, S is sum_i lambda_i chi2(1)."""
    mean = weights @ rows / weights.sum()
    scaled = (rows - mean) * np.sqrt(weights)[:, None] / np.sqrt(variance)[None, :]
    values = np.linalg.svd(scaled, compute_uv=False) ** 2 / max(len(rows) - 1, 1)
    return values[values > 1e-9 * values.max()]


def mixture_sf(x: float, lam: np.ndarray) -> float:
    """P(sum_i lambda_i chi2(1) > x) by the Lugannani-Rice saddlepoint approximation (for x above the mean)."""
    if x <= lam.sum():
        return 0.5
    low, high = 0.0, 0.5 / lam.max()
    for _ in range(200):  # K'(t) = x, K'(t) = sum lambda / (1 - 2 lambda t), increasing in t
        t = (low + high) / 2
        low, high = (t, high) if float(np.sum(lam / (1 - 2 * lam * t))) < x else (low, t)
    t = (low + high) / 2
    k = -0.5 * float(np.sum(np.log1p(-2 * lam * t)))
    k2 = float(np.sum(2 * lam**2 / (1 - 2 * lam * t) ** 2))
    w = math.sqrt(max(2 * (t * x - k), 1e-300))
    u = t * math.sqrt(k2)
    normal = NormalDist()
    return max(normal.cdf(-w) + math.exp(-w * w / 2) / math.sqrt(2 * math.pi) * (1 / u - 1 / w), 0.0)


def mixture_quantile(lam: np.ndarray, alpha: float) -> float:
    """The x that sum_i lambda_i chi2(1) exceeds with probability alpha (bisection on `mixture_sf`)."""
    low, high = float(lam.sum()), float(lam.sum()) + 10 * float(lam.max())
    while mixture_sf(high, lam) > alpha:
        low, high = high, high + 2 * (high - low)
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mixture_sf(middle, lam) > alpha else (low, middle)
    return (low + high) / 2


def studentized_fit(rows: np.ndarray, weights: np.ndarray, seed: int) -> tuple[float, float]:
    """`drift._calibrate` (same rounds, window, draws and fit), except that each round's terms are divided by
    the variance of that round's resampled reference, computed as `reference_from_rows` computes it."""
    from layerscope.service.monitoring import drift

    m = len(rows)
    rng = np.random.default_rng(seed)
    n = min(drift.BOOTSTRAP_WINDOW, m)
    window_draws = drift._draws(rng, m, n, drift.BOOTSTRAP_ROUNDS) * weights
    base_draws = drift._draws(rng, m, m, drift.BOOTSTRAP_ROUNDS) * weights
    window_weight, base_weight = window_draws.sum(axis=1), base_draws.sum(axis=1)
    windows = window_draws @ rows / window_weight[:, None]
    bases = base_draws @ rows / base_weight[:, None]
    spread = (base_draws @ rows**2 - base_weight[:, None] * bases**2) / (m - 1)
    variance = np.maximum(spread, drift.VARIANCE_FLOOR * base_weight[:, None] / m)
    scale = variance * (1.0 / window_weight + 1.0 / base_weight)[:, None]
    stats = ((windows - bases) ** 2 / scale).sum(axis=1)
    mu, var = float(stats.mean()), float(stats.var(ddof=1))
    if mu <= 0 or var <= 0:
        return 1.0, 1.0
    dof = min(2.0 * mu * mu / var, drift._dof_for_tail(float(np.quantile(stats, drift.TAIL_LEVEL)) / mu))
    return mu / dof, dof


def summarize_detection(shift: str, n: int, sim: dict[str, Any], reference: Reference) -> dict[str, Any]:
    flagged = [d for d in sim["drifting"] if d]
    total = len(sim["drifting"])
    p = len(flagged) / total
    first = Counter(d[0] for d in flagged)
    name, count = first.most_common(1)[0] if first else ("-", 0)
    return {
        "shift": shift,
        "n": n,
        "windows": total,
        "p_flag": p,
        "p_flag_ci95": list(wilson(len(flagged), total)),
        "windows_to_first": (1 / p) if p else None,
        "first_layer": name,
        "first_layer_share": count / len(flagged) if flagged else 0.0,
        "first_layers": dict(first.most_common()),
        "median_layers_drifting": float(np.median([len(d) for d in sim["drifting"]])),
        "median_first_layer_score": float(np.median(sim["score"][:, 0])),
        "model_first_layer": next(iter(reference.layers)),
    }


# -- printing -----------------------------------------------------------------------------------------------------


def traffic(n: int) -> str:
    return f"{n / WINDOW_SECONDS / SAMPLE_RATE:.2f} req/s"


def print_tables(results: list[dict[str, Any]], windows: int) -> None:
    sizes = " / ".join(str(n) for n in SIZES)
    rates = " / ".join(traffic(n) for n in SIZES)
    print(
        f"\nScenario: windows of {WINDOW_SECONDS:.0f} s (the default), n sampled requests per window; at the default "
        f"{SAMPLE_RATE:.0%} sampling n = {sizes} is {rates} of Predict traffic (1 req/s gives n = "
        f"{WINDOW_SECONDS * SAMPLE_RATE:.0f}; below n = {MIN_WINDOW_REQUESTS}, {traffic(MIN_WINDOW_REQUESTS)}, a "
        f"window is not judged). One request = one batch of {BATCH} images. Reference: {EDGE} requests choose the "
        f"edges, the next {REFERENCE_REQUESTS} are counted on them. Default alpha per window: {ALPHA_MODEL:.3g} per "
        f"model (1 false alarm / week at {WINDOWS_PER_WEEK:.0f} windows / week), divided by L layers."
    )
    print("\n== False alarms on stationary traffic, at the defaults ==")
    header = (
        f"{'model':10} {'L':>3} {'n':>3} {'traffic@5%':>11} {'windows':>7} {'alarms':>6} {'rate/window':>11} "
        f"{'95% CI':>19} {'nominal':>8} {'per week':>8} {'95% CI':>15} {'corr./wk':>8} {'max score':>9} "
        f"{'p99':>5} {'@nominal':>8} {'>0.5':>6} {'nom':>6} {'>0.7':>6} {'nom':>6} {'infl':>5}"
    )
    print(header)
    for r in results:
        for n in SIZES:
            x = r["null"][n]
            low, high = x["rate_ci95"]
            wl, wh = x["per_week_ci95"]
            t5, t7 = x["tail"]["0.5"], x["tail"]["0.7"]
            print(
                f"{r['model']:10} {r['layers']:>3} {n:>3} {traffic(n):>11} {x['windows']:>7} {x['alarms']:>6} "
                f"{x['rate']:>11.2e} [{low:.1e}, {high:.1e}] {x['nominal']:>8.2e} {x['per_week']:>8.2f} "
                f"[{wl:5.2f}, {wh:6.2f}] {x['corrected_per_week']:>8.2f} {x['max_score']:>9.3f} "
                f"{x['p99_max_score']:>5.2f} {x['score_at_nominal_quantile']:>8.2f} "
                f"{t5['share']:>6.3f} {t5['nominal']:>6.3f} {t7['share']:>6.3f} {t7['nominal']:>6.3f} "
                f"{x['bootstrap_inflation']:>5.1%}"
            )
            if x["alarms"]:
                rates = ", ".join(f"{v:.1e}" for v in x["rate_per_reference"])
                print(f"{'':14} per reference: {rates}; layer:part in alarms: {x['layer_parts_in_alarms']}")
        u = r["unjudged"]
        print(
            f"{r['model']:10} {r['layers']:>3} {u['n']:>3} {traffic(u['n']):>11} {u['windows']:>7} {u['alarms']:>6}"
            f"  not judged: {u['judged']} of {u['windows']} windows judged (below {MIN_WINDOW_REQUESTS} requests)"
        )
    print(
        "  corr./wk: per week with each statistic scaled down by the pool's inflation; @nominal: the largest layer "
        "score exceeded by a share alpha of windows (1.0 if calibrated); >t: share of windows whose largest layer "
        "score exceeds t, nom: what the fitted nulls c*chi2(nu) predict for it (layers independent); infl: the "
        "bootstrap pool's extra variance 1/H over (1/n + 1/m). The 95% CIs treat windows as independent; windows of "
        "one reference share its errors, so the per-reference rates say more."
    )
    print("\n== Calibration where it can be measured: the same windows re-judged at a larger alpha ==")
    print(
        f"{'model':10} {'n':>3} {'alpha/model':>11} {'model rate':>10} {'95% CI':>17} {'corrected':>9} "
        f"{'95% CI':>17} {'layer rate':>10} {'corrected':>9} {'alpha/L':>8} {'x nominal':>9} {'corr. x':>7}"
    )
    for r in results:
        for n in SIZES:
            for alpha, x in r["null"][n]["larger_alpha"].items():
                low, high = x["ci95"]
                cl, ch = x["corrected_ci95"]
                print(
                    f"{r['model']:10} {n:>3} {float(alpha):>11.3f} {x['model_rate']:>10.4f} [{low:.4f}, {high:.4f}] "
                    f"{x['corrected_model_rate']:>9.4f} [{cl:.4f}, {ch:.4f}] {x['mean_layer_rate']:>10.5f} "
                    f"{x['corrected_mean_layer_rate']:>9.5f} {x['layer_nominal']:>8.5f} "
                    f"{x['mean_layer_rate'] / x['layer_nominal']:>8.2f}x "
                    f"{x['corrected_mean_layer_rate'] / x['layer_nominal']:>6.2f}x"
                )
    print(
        "\n== Per layer: false-alarm rate at a per-layer alpha (statistics corrected for the pool's inflation), "
        "and mean S / (c*nu) as judged =="
    )
    for r in results:
        infl = ", ".join(f"n={n}: {r['null'][n]['bootstrap_inflation']:.1%}" for n in SIZES)
        print(f"{r['model']} (D features, c and nu of the first reference's null; pool inflation {infl})")
        cells = " ".join(f"{f'{a:.1%} n={n}':>11}" for a in LAYER_ALPHAS for n in SIZES)
        means = " ".join(f"{f'mean n={n}':>9}" for n in SIZES)
        print(f"  {'layer':26} {'D':>4} {'c':>7} {'nu':>6} {cells} {means} {'max score':>9}")
        for layer in r["reference_layers"]:
            p = layer["layer"]
            rates = " ".join(
                f"{r['null'][n]['per_layer'][p][f'corrected {a}']:>11.4f}" for a in LAYER_ALPHAS for n in SIZES
            )
            ratio = " ".join(f"{r['null'][n]['per_layer'][p]['mean_over_null_mean']:>9.2f}" for n in SIZES)
            top = max(r["null"][n]["per_layer"][p]["max_score"] for n in SIZES)
            print(
                f"  {p:26} {layer['features']:>4} {layer['scale']:>7.3f} {layer['dof']:>6.1f} "
                f"{rates} {ratio} {top:>9.3f}"
            )
    print(
        "\n== Diagnosis (not the service's fit): the same windows against other nulls, statistics corrected for the "
        "pool's inflation. at n: bootstrap windows of the judged n; studentized: the service's bootstrap with each "
        "round's variance re-estimated from its resampled reference; mixture: sum_i lambda_i chi2(1), lambda the "
        "eigenvalues of the reference's standardised feature covariance (saddlepoint tail) =="
    )
    print(f"{'model':10} {'n':>3} {'null':>11} {'alpha/model':>11} {'model rate':>10} {'95% CI':>19} {'x nominal':>9}")
    for r in results:
        for n in SIZES:
            for name, fit in r["null"][n]["refitted"].items():
                for x in fit.values():
                    low, high = x["ci95"]
                    print(
                        f"{r['model']:10} {n:>3} {name:>11} {x['nominal']:>11.3g} {x['rate']:>10.2e} "
                        f"[{low:.1e}, {high:.1e}] {x['rate'] / x['nominal']:>8.2f}x"
                    )
    print(
        f"\n== Batch size, no shift of the data: the same held-out images in requests of {SMALL_BATCH} against the "
        f"first reference (requests of {BATCH}), and a reference made from requests of {SMALL_BATCH} against them "
        f"in requests of {BATCH} =="
    )
    print(
        f"{'model':10} {'case':24} {'pool':>5} {'n':>3} {'windows':>7} {'alarms':>6} {'per week':>8} "
        f"{'95% CI':>15} {'corr./wk':>8} {'@0.01':>7} {'corr.':>7} {'@0.05':>7} {'corr.':>7} {'infl':>5} "
        f"{'mean S/(c*nu): median layer':>28} {'largest':>24}"
    )
    for r in results:
        for x in r["batch"]:
            wl, wh = x["per_week_ci95"]
            a1, a5 = x["larger_alpha"]["0.01"], x["larger_alpha"]["0.05"]
            means = {p: v["mean_over_null_mean"] for p, v in x["per_layer"].items()}
            top = max(means, key=lambda p: means[p])
            print(
                f"{r['model']:10} {x['case']:24} {x['pool']:>5} {x['n']:>3} {x['windows']:>7} {x['alarms']:>6} "
                f"{x['per_week']:>8.2f} [{wl:5.2f}, {wh:6.2f}] {x['corrected_per_week']:>8.2f} "
                f"{a1['model_rate']:>7.4f} {a1['corrected_model_rate']:>7.4f} {a5['model_rate']:>7.4f} "
                f"{a5['corrected_model_rate']:>7.4f} {x['bootstrap_inflation']:>5.1%} "
                f"{float(np.median(list(means.values()))):>28.2f} {f'{top} {means[top]:.2f}':>24}"
            )
    print(
        "  @alpha: model-level rate of the same windows re-judged at that alpha (corr.: corrected for the pool); "
        "mean S/(c*nu): the statistic's mean over the null's (1.0 when the test's variance is right, below 1 "
        "conservative, above 1 inflated)."
    )
    print(
        f"\n== Detection of input shifts (windows drawn from shifted requests, judged against the first reference "
        f"at the default alpha {ALPHA_MODEL:.3g} per model; window {WINDOW_SECONDS:.0f} s) =="
    )
    print(
        f"{'model':10} {'shift':18} {'n':>3} {'windows':>7} {'P(flag)':>8} {'95% CI':>17} {'E[windows]':>10} "
        f"{'E[min]':>7} {'first layer named':>18} {'share':>6} {'layers':>6} {'first score':>11}"
    )
    for r in results:
        for d in r["detection"]:
            low, high = d["p_flag_ci95"]
            expected = d["windows_to_first"]
            wait = (
                f"{expected:>10.2f} {expected * WINDOW_SECONDS / 60:>7.1f}" if expected else f"{'never':>10} {'-':>7}"
            )
            print(
                f"{r['model']:10} {d['shift']:18} {d['n']:>3} {d['windows']:>7} {d['p_flag']:>8.4f} "
                f"[{low:.4f}, {high:.4f}] {wait} {d['first_layer']:>18} {d['first_layer_share']:>6.1%} "
                f"{d['median_layers_drifting']:>6.0f} {d['median_first_layer_score']:>11.2f}"
            )
    print(
        "  E[windows]: expected windows to the first detection, 1/P(flag) (E[min] at 300 s windows); first layer named:"
        " the most common first drifting layer (model order) among flagged windows, with its share; layers: median"
        " number drifting; first score: median score of the model's first layer (its default threshold is 1)."
    )
    print(f"  ({windows} simulated stationary windows per reference and n.)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller pools and fewer windows (about three minutes)")
    parser.add_argument("--windows", type=int, help="stationary windows per reference and n (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    windows = args.windows or (3000 if args.quick else 10000)
    started = time.perf_counter()
    results = []
    for engine, plan in build_engines(args.quick):
        results.append(study(engine, plan, windows, args.seed))
    print_tables(results, windows)
    print(
        f"\n(total {time.perf_counter() - started:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    if args.json:
        doc = {
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "window_seconds": WINDOW_SECONDS,
            "alpha_per_model": ALPHA_MODEL,
            "windows_per_reference": windows,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)


if __name__ == "__main__":
    main()
