"""The live-traffic drift test by simulation: false alarms on stationary traffic, and detection delay.

    .venv/bin/python bench/bench_drift.py [--quick] [--windows 10000] [--json out.json]

Real per-request activation summaries: the bench models of bench_capture.py (a small CNN and a 12-Conv2D
64x64 CNN) run through `CaptureEngine.capture` with the selection a sampled request uses (every layer's
activation summaries, default "sampled" statistics, the fused kernel loaded as the server loads it) on
batches of 32 stationary images (uniform [0, 1) pixels): one capture is one Predict request of batch 32.
That pool is made once (the TensorFlow part); everything after it is the pure monitoring code, no
TensorFlow:

- References: `build_layer_reference` on `reference_requests` (200, the default) requests per layer, seeded
  as the monitor seeds it. Several references from disjoint parts of the pool, since the null the test is
  calibrated for includes the reference's own noise.
- Stationary windows of n sampled requests (n = 5, 20, 60) drawn by bootstrap from a held-out part of the
  pool (requests no reference saw), each judged with `judge` at the server's defaults (window 300 s, one
  false alarm per model per week: alpha per window 300/604800 for the model, Bonferroni over its L layers).
  A window is a model-level false alarm when any layer is drifting. Its per-layer feature sums are the sums
  of the requests' `features` on the reference's edges, which is what `LayerWindow.add` accumulates (checked
  against `add` on real summaries at the start).
- Because that alpha is ~5e-4 per window, the tail is also read where it can be measured: the share of
  windows whose largest layer score exceeds 0.5 and 0.7, beside what the fitted null c * chi2(nu) predicts
  for it, and the same windows re-judged at a per-model alpha of 0.01 and 0.05 (and each layer at 1% and
  0.1%), where a few thousand windows estimate the rate.
- Detection: the same engine on shifted inputs (brightness, contrast, a zeroed channel or region, noise, and,
  as a control that is no shift of the data at all, the same images in requests of 8 instead of 32),
  windows drawn from those requests and judged against the first reference: the probability a window is
  flagged, the expected windows to first detection (1/p: windows are independent), and which layer the
  window names first (model order: the first conv is expected).

A bootstrap pool of H held-out requests adds its own sampling error (1/H) to every window's mean, so
simulated windows look a little less stationary than fresh traffic would: the inflation of the test's
variance, 1/H over (1/n + 1/m), is printed beside each table (it makes the raw figures conservative), and
"corrected" figures scale each statistic down by it. A last table, a diagnosis rather than what the service
does, re-judges the same windows against nulls fitted at the judged window's n instead of BOOTSTRAP_WINDOW.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from layerscope.service.domain.summary import Summary
from layerscope.service.monitoring.drift import (
    SECONDS_PER_WEEK,
    Reference,
    build_layer_reference,
    chi2_quantile,
    judge,
)
from layerscope.service.monitoring.window import LayerWindow, Window, features

WINDOW_SECONDS = 300.0  # the server's default monitor_window_seconds
FALSE_ALARMS_PER_WEEK = 1.0  # the server's default monitor_false_alarms_per_week
REFERENCE_REQUESTS = 200  # the server's default monitor_reference_requests
SAMPLE_RATE = 0.05  # the server's default monitor_sample_rate
WINDOWS_PER_WEEK = SECONDS_PER_WEEK / WINDOW_SECONDS
ALPHA_MODEL = FALSE_ALARMS_PER_WEEK / WINDOWS_PER_WEEK
BATCH = 32
SMALL_BATCH = 8
"""Not a shift of the data: requests of 8 images instead of 32 (a change in the traffic's batch-size mix)."""
SIZES = (5, 20, 60)
LARGER_ALPHAS = (0.01, 0.05)
LAYER_ALPHAS = (0.01, 0.001)
TAIL_SCORES = (0.5, 0.7)

Requests = list[dict[str, Summary]]
"""One dict per request: capture point -> its activation summary (model order)."""
Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


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


# -- the TensorFlow part: real summaries ------------------------------------------------------------------------


def capture_pool(
    engine: Any, count: int, rng: np.random.Generator, shift: Shift | None = None, batch: int = BATCH
) -> Requests:
    """`count` requests of `batch` images through the capture path a sampled request takes."""
    from layerscope.service.inspector import LIVE_SELECTION

    spec = engine.inputs[0]
    shape = (batch, *(d or 1 for d in spec.shape[1:]))
    pool = []
    for _ in range(count):
        x = rng.random(shape, dtype=np.float32)
        if shift is not None:
            x = shift(x, rng).astype("float32")
        result = engine.capture({spec.name: x}, LIVE_SELECTION)
        pool.append({p: kinds["activation"] for p, kinds in result.summaries.items() if "activation" in kinds})
    return pool


def build_engines(quick: bool) -> list[tuple[Any, int, int, int]]:
    """(engine, pool size, references, shifted requests per shift) per bench model."""
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
        plans = [(small_cnn, 800, 2, 100), (deep_cnn, 400, 1, 40)]
    else:
        plans = [(small_cnn, 3000, 4, 200), (deep_cnn, 1200, 2, 80)]
    engines = []
    for build, pool, references, shifted in plans:
        keras.backend.clear_session()  # layer names start afresh per model: conv2d is each model's first conv
        keras.utils.set_random_seed(0)
        engines.append((CaptureEngine(build(), summary_op=summary_op), pool, references, shifted))
    return engines


# -- the pure part: references, windows, judging ----------------------------------------------------------------


def make_reference(model: str, requests: Requests, tag: str) -> Reference:
    points = list(requests[0])
    layers = {p: build_layer_reference([r[p] for r in requests], zlib.crc32(p.encode())) for p in points}
    return Reference(f"ref-{tag}", model, 1, datetime.now(UTC), "traffic", len(requests), layers)


def feature_rows(requests: Requests, reference: Reference) -> dict[str, np.ndarray]:
    """Per layer: one row of drift features per request, on the reference's edges."""
    return {p: np.stack([features(r[p], ref.edges) for r in requests]) for p, ref in reference.layers.items()}


def check_sums_match_add(requests: Requests, reference: Reference, rows: dict[str, np.ndarray]) -> None:
    """The shortcut (a window's feature sum as a sum of rows) against what `LayerWindow.add` accumulates."""
    for point, ref in reference.layers.items():
        layer = LayerWindow()
        for request in requests[:7]:
            layer.add(request[point], ref.edges)
        np.testing.assert_allclose(layer.feature_sum, rows[point][:7].sum(axis=0), rtol=1e-12, atol=1e-12)
        assert layer.requests == 7


def window_of(reference: Reference, sums: dict[str, np.ndarray], n: int) -> Window:
    now = datetime.now(UTC)
    layers = {p: LayerWindow(requests=n, feature_sum=s) for p, s in sums.items()}
    edges = {p: r.edges for p, r in reference.layers.items()}
    return Window("w-sim", reference.model, 1, "bench", now, now, reference.reference_id, layers, edges=edges)


def simulate(
    reference: Reference, rows: dict[str, np.ndarray], n: int, windows: int, rng: np.random.Generator
) -> dict[str, Any]:
    """`windows` windows of n requests drawn (with replacement) from `rows`, each judged at the defaults.

    Returns per window and layer the statistic and the default score, and per window the layers drifting
    (model order)."""
    points = list(reference.layers)
    held = len(next(iter(rows.values())))
    statistic = np.zeros((windows, len(points)))
    score = np.zeros((windows, len(points)))
    drifting: list[list[str]] = []
    parts: list[str] = []
    chunk = 500
    for start in range(0, windows, chunk):
        count = min(chunk, windows - start)
        index = rng.integers(0, held, (count, n))
        sums = {p: rows[p][index].sum(axis=1) for p in points}
        for w in range(count):
            window = window_of(reference, {p: sums[p][w] for p in points}, n)
            judge(window, reference, WINDOWS_PER_WEEK, FALSE_ALARMS_PER_WEEK)
            for j, p in enumerate(points):
                statistic[start + w, j] = window.drift[p].statistic
                score[start + w, j] = window.drift[p].score
            drifting.append(window.drifting)
            parts.extend(f"{p}:{window.drift[p].part}" for p in window.drifting)
    return {"statistic": statistic, "score": score, "drifting": drifting, "points": points, "parts": parts}


def thresholds(reference: Reference, alpha_layer: float) -> np.ndarray:
    """Each layer's threshold at a per-layer alpha: what `judge_layer` computes."""
    return np.array([r.scale * chi2_quantile(r.dof, alpha_layer) for r in reference.layers.values()])


def rejudge_matches(reference: Reference, rows: dict[str, np.ndarray], n: int, alpha_model: float) -> None:
    """Re-judging from the kept statistics agrees with `judge` itself at that alpha (a few windows)."""
    rng = np.random.default_rng(99)
    points = list(reference.layers)
    limit = thresholds(reference, alpha_model / len(points))
    for _ in range(20):
        index = rng.integers(0, len(rows[points[0]]), n)
        window = window_of(reference, {p: rows[p][index].sum(axis=0) for p in points}, n)
        judge(window, reference, WINDOWS_PER_WEEK, alpha_model * WINDOWS_PER_WEEK)
        ours = [window.drift[p].statistic >= t for p, t in zip(points, limit, strict=True)]
        assert ours == [window.drift[p].drifting for p in points], (ours, window.drift)


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


def study(engine: Any, pool_size: int, references: int, shifted: int, windows: int, seed: int) -> dict[str, Any]:
    model = engine.model.name
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    pool = capture_pool(engine, pool_size, rng)
    capture_seconds = time.perf_counter() - started
    held_out = pool[references * REFERENCE_REQUESTS :]
    refs = [
        make_reference(model, pool[r * REFERENCE_REQUESTS : (r + 1) * REFERENCE_REQUESTS], f"{model}-{r}")
        for r in range(references)
    ]
    L = len(refs[0].layers)
    print(
        f"{model}: {pool_size} requests of batch {BATCH} captured in {capture_seconds:.1f} s; {L} layers; "
        f"{references} references of {REFERENCE_REQUESTS}, {len(held_out)} held out",
        flush=True,
    )
    held_rows = [feature_rows(held_out, reference) for reference in refs]
    for reference, rows in zip(refs, held_rows, strict=True):
        check_sums_match_add(held_out, reference, rows)
    reference_rows = [
        feature_rows(pool[r * REFERENCE_REQUESTS : (r + 1) * REFERENCE_REQUESTS], reference)
        for r, reference in enumerate(refs)
    ]
    null: dict[int, dict[str, Any]] = {}
    for n in SIZES:
        per_ref = []
        for reference, rows in zip(refs, held_rows, strict=True):
            rejudge_matches(reference, rows, n, LARGER_ALPHAS[-1])
            per_ref.append((reference, simulate(reference, rows, n, windows, rng)))
        null[n] = summarize_null(per_ref, n, len(held_out))
        null[n]["refitted"] = refitted(per_ref, reference_rows, n, len(held_out))
    # Detection: shifted requests against the first reference.
    detection = []
    shift_seconds = time.perf_counter()
    channels = int(engine.inputs[0].shape[-1] or 1)
    cases: list[tuple[str, Shift | None, int]] = [(name, shift, BATCH) for name, shift in shifts(channels).items()]
    cases.append((f"none, batch {SMALL_BATCH}", None, SMALL_BATCH))  # the same images, smaller requests
    for name, shift, batch in cases:
        requests = capture_pool(engine, shifted, rng, shift, batch)
        rows = feature_rows(requests, refs[0])
        for n in SIZES:
            detection.append(summarize_detection(name, n, simulate(refs[0], rows, n, min(windows, 1000), rng), refs[0]))
    print(f"{model}: shifted requests captured and judged in {time.perf_counter() - shift_seconds:.1f} s", flush=True)
    layers = [
        {"layer": p, "features": len(r.mean), "units": r.units, "scale": round(r.scale, 4), "dof": round(r.dof, 2)}
        for p, r in refs[0].layers.items()
    ]
    return {
        "model": model,
        "layers": L,
        "pool": pool_size,
        "references": references,
        "held_out": len(held_out),
        "capture_seconds": round(capture_seconds, 1),
        "reference_layers": layers,
        "null": null,
        "detection": detection,
    }


def summarize_null(per_ref: list[tuple[Reference, dict[str, Any]]], n: int, held: int) -> dict[str, Any]:
    """Model-level and per-layer false alarms over every reference's windows, as judged ("raw") and with each
    statistic scaled down by the bootstrap pool's inflation ("corrected": (1/n + 1/m) / (1/n + 1/m + 1/H))."""
    inflation = (1 / held) / (1 / n + 1 / REFERENCE_REQUESTS)
    correct = 1 / (1 + inflation)
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
        "bootstrap_inflation": inflation,
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
    per_ref: list[tuple[Reference, dict[str, Any]]], reference_rows: list[dict[str, np.ndarray]], n: int, held: int
) -> dict[str, Any]:
    """Diagnosis, not what the service does: the same windows' statistics against nulls c * chi2(nu) fitted as
    `build_layer_reference` fits them (moments of S over bootstrap windows of the reference's own requests),
    but with bootstrap windows of the judged window's n instead of BOOTSTRAP_WINDOW, and 2000 rounds. Rates
    corrected for the pool's inflation."""
    from layerscope.service.monitoring import drift

    correct = 1 / (1 + (1 / held) / (1 / n + 1 / REFERENCE_REQUESTS))
    saved = drift.BOOTSTRAP_WINDOW, drift.BOOTSTRAP_ROUNDS
    drift.BOOTSTRAP_WINDOW, drift.BOOTSTRAP_ROUNDS = n, 2000
    try:
        fits = [
            [drift._calibrate(rows[p], r.mean, r.variance, zlib.crc32(p.encode())) for p, r in reference.layers.items()]
            for (reference, _), rows in zip(per_ref, reference_rows, strict=True)
        ]
    finally:
        drift.BOOTSTRAP_WINDOW, drift.BOOTSTRAP_ROUNDS = saved
    total = sum(len(sim["drifting"]) for _, sim in per_ref)
    out = {}
    for alpha in (ALPHA_MODEL, *LARGER_ALPHAS):
        hits = 0
        for (_, sim), fit in zip(per_ref, fits, strict=True):
            limit = np.array([c * chi2_quantile(nu, alpha / len(fit)) for c, nu in fit])
            hits += int((sim["statistic"] * correct >= limit[None, :]).any(axis=1).sum())
        out[f"{alpha:.3g}"] = {"rate": hits / total, "ci95": list(wilson(hits, total)), "nominal": alpha}
    return out


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
    print(
        f"\nScenario: windows of {WINDOW_SECONDS:.0f} s (the default), n sampled requests per window; at the default "
        f"{SAMPLE_RATE:.0%} sampling n = 5 / 20 / 60 is {traffic(5)} / {traffic(20)} / {traffic(60)} of Predict "
        f"traffic (1 req/s gives n = {WINDOW_SECONDS * SAMPLE_RATE:.0f}). One request = one batch of {BATCH} "
        f"images. Reference: {REFERENCE_REQUESTS} requests. Default alpha per window: {ALPHA_MODEL:.3g} per model "
        f"(1 false alarm / week at {WINDOWS_PER_WEEK:.0f} windows / week), divided by L layers."
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
    print(
        "  corr./wk: per week with each statistic scaled down by the pool's inflation; @nominal: the largest layer "
        "score exceeded by a share alpha of windows (1.0 if calibrated); >t: share of windows whose largest layer "
        "score exceeds t, nom: what the fitted nulls c*chi2(nu) predict for it (layers independent); infl: the "
        "bootstrap pool's extra variance 1/H over (1/n + 1/m)."
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
        "\n== Diagnosis (not the service's fit): the same windows against nulls fitted at the window's n "
        "(bootstrap windows of n requests, 2000 rounds), statistics corrected for the pool's inflation =="
    )
    print(f"{'model':10} {'n':>3} {'alpha/model':>11} {'model rate':>10} {'95% CI':>19} {'x nominal':>9}")
    for r in results:
        for n in SIZES:
            for x in r["null"][n]["refitted"].values():
                low, high = x["ci95"]
                print(
                    f"{r['model']:10} {n:>3} {x['nominal']:>11.3g} {x['rate']:>10.2e} [{low:.1e}, {high:.1e}] "
                    f"{x['rate'] / x['nominal']:>8.2f}x"
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
    parser.add_argument("--quick", action="store_true", help="smaller pools and fewer windows (about a minute)")
    parser.add_argument("--windows", type=int, help="stationary windows per reference and n (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    windows = args.windows or (3000 if args.quick else 10000)
    started = time.perf_counter()
    results = []
    for engine, pool, references, shifted in build_engines(args.quick):
        results.append(study(engine, pool, references, shifted, windows, args.seed))
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
