"""Live-traffic monitoring's core, without TensorFlow or a server: sampling, windows that merge exactly,
histograms on frozen edges, references, and a drift test that stays quiet on stationary traffic and fires
on shifted traffic."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from layerscope.service.domain.summary import Summary, summarize
from layerscope.service.errors import FailedPrecondition, NotFound, StoreUnavailable
from layerscope.service.monitoring import projection
from layerscope.service.monitoring.drift import (
    Reference,
    build_layer_reference,
    chi2_quantile,
    judge_layer,
    reference_from_window,
)
from layerscope.service.monitoring.model_monitor import MonitorConfig, Sample
from layerscope.service.monitoring.monitor import Monitor, Rates
from layerscope.service.monitoring.sampling import Budget, Sampler
from layerscope.service.monitoring.window import LayerWindow, Window, merge_windows

WEIGHTS = np.random.default_rng(7).normal(size=(16, 24)) / 4


def relu_request(rng: np.random.Generator, shift: float = 0.0, batch: int = 32) -> Summary:
    """One request's activations of a ReLU Dense layer: many exact zeros, a positive tail."""
    x = rng.normal(size=(batch, 16)) + shift
    return summarize(np.maximum(x @ WEIGHTS, 0.0).astype(np.float32))


def never(point: str, summary: Summary) -> tuple[float | None, float | None]:
    return None, None


# -- sampling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.3, 1.0])
def test_sampling_takes_exactly_the_share_asked_for_evenly_spaced(rate: float) -> None:
    sampler = Sampler(rate)
    taken = [i for i in range(1000) if sampler.take()]
    assert len(taken) == round(1000 * rate)
    if len(taken) > 2:
        assert set(np.diff(taken)) <= {math.floor(1 / rate), math.ceil(1 / rate)}


def test_the_budget_refuses_once_sampled_calls_took_their_share_of_recent_time() -> None:
    now = [0.0]
    budget = Budget(0.1, clock=lambda: now[0])  # 1 s of every 10 s
    assert budget.allows()
    budget.spend(0.6)
    assert budget.allows()
    budget.spend(0.6)
    assert not budget.allows()
    now[0] = 10.5  # those calls left the 10 s window
    assert budget.allows()


# -- frozen edges and windows --------------------------------------------------------------------------------


def test_a_request_projected_on_frozen_edges_keeps_its_mass_and_its_exact_zeros() -> None:
    rng = np.random.default_rng(0)
    summaries = [relu_request(rng) for _ in range(50)]
    edges = projection.choose_edges(summaries)
    assert np.all(np.diff(edges) > 0) and len(edges) <= projection.FROZEN_BINS + 1
    shares = projection.distribution(summaries[0], edges)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[projection.ZERO] == pytest.approx(summaries[0].zero_fraction)
    # Equal-mass bins: across the reference each frozen bin holds about the same share of nonzero values.
    pooled = np.mean([projection.distribution(s, edges) for s in summaries], axis=0)
    inner = pooled[projection.UNDER + 1 : -1]
    assert inner.max() / inner.min() < 2.0
    assert pooled[projection.UNDER] < 0.02 and pooled[-1] < 0.02


def test_a_tensor_without_finite_values_projects_to_nothing() -> None:
    nan = summarize(np.full((4, 3), np.nan, np.float32))
    assert projection.distribution(nan, np.array([0.0, 1.0])).sum() == 0.0


def test_windows_merge_exactly_a_minute_adds_into_an_hour() -> None:
    rng = np.random.default_rng(1)
    requests = [relu_request(rng) for _ in range(12)]
    edges = projection.choose_edges(requests)
    whole, first, second = LayerWindow(), LayerWindow(), LayerWindow()
    for i, summary in enumerate(requests):
        whole.add(summary, edges)
        (first if i < 5 else second).add(summary, edges)
    merged = first.merge(second)
    for name in ("count", "zeros", "nan", "requests", "low", "high"):
        assert getattr(merged, name) == getattr(whole, name), name
    for name in ("total", "squares", "positions"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name)), name
    for name in ("activity", "histogram", "feature_sum", "feature_squares"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name))
    # The merged mean is the mean of every value seen.
    assert merged.mean == pytest.approx(sum(s.mean * s.count for s in requests) / sum(s.count for s in requests))


def test_a_window_reads_back_as_a_capture_summary() -> None:
    rng = np.random.default_rng(2)
    requests = [relu_request(rng) for _ in range(8)]
    edges = projection.choose_edges(requests)
    layer = LayerWindow()
    for summary in requests:
        layer.add(summary, edges)
    summary = layer.summary(edges)
    assert summary.count == sum(s.count for s in requests)
    assert summary.zero_fraction == pytest.approx(np.mean([s.zero_fraction for s in requests]))
    assert sum(summary.histogram) == pytest.approx(summary.count - summary.non_finite, rel=0.01)
    assert summary.min == min(s.min for s in requests) and summary.max == max(s.max for s in requests)


def test_windows_on_different_bins_refuse_to_merge() -> None:
    rng = np.random.default_rng(3)
    a, b = LayerWindow(), LayerWindow()
    a.add(relu_request(rng), np.array([0.0, 1.0]))
    b.add(relu_request(rng), np.array([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="same bins"):
        a.merge(b)


def test_a_window_survives_its_round_trip_through_data() -> None:
    rng = np.random.default_rng(4)
    edges = projection.choose_edges([relu_request(rng) for _ in range(10)])
    layer = LayerWindow()
    layer.add(relu_request(rng), edges)
    now = datetime.now(UTC)
    window = Window("w-1", "m", 1, "r", now, now, "ref-1", {"dense": layer}, edges={"dense": edges})
    head = {k: getattr(window, k) for k in ("window_id", "model", "version", "replica", "reference_id", "resolution")}
    back = Window.from_data({**head, "started": now, "ended": now}, window.to_data())
    np.testing.assert_allclose(back.layers["dense"].feature_sum, layer.feature_sum)
    np.testing.assert_allclose(back.edges["dense"], edges)
    assert merge_windows([window, back], "h-1", "hour").layers["dense"].requests == 2


# -- the drift test ------------------------------------------------------------------------------------------


def test_chi2_quantile_matches_known_values() -> None:
    # Known quantiles: chi2(10) 0.95 -> 18.307, chi2(50) 0.999 -> 86.661.
    assert chi2_quantile(10, 0.05) == pytest.approx(18.307, rel=0.01)
    assert chi2_quantile(50, 0.001) == pytest.approx(86.661, rel=0.01)


def window_of(rng: np.random.Generator, edges: np.ndarray, n: int, shift: float = 0.0) -> LayerWindow:
    layer = LayerWindow()
    for _ in range(n):
        layer.add(relu_request(rng, shift), edges)
    return layer


def test_stationary_windows_stay_quiet_and_a_small_shift_is_found() -> None:
    rng = np.random.default_rng(5)
    reference = build_layer_reference([relu_request(rng) for _ in range(200)], seed=1)
    alpha = 1e-5
    quiet = [judge_layer(window_of(rng, reference.edges, 20), reference, alpha) for _ in range(60)]
    assert not any(d.drifting for d in quiet)
    assert max(d.score for d in quiet) < 1.0
    shifted = [judge_layer(window_of(rng, reference.edges, 20, shift=0.3), reference, alpha) for _ in range(10)]
    assert all(d.drifting for d in shifted)
    assert {d.part for d in shifted} <= {"histogram", "activity", "scale"}


def test_a_window_with_too_few_requests_is_not_judged() -> None:
    rng = np.random.default_rng(6)
    reference = build_layer_reference([relu_request(rng) for _ in range(50)], seed=1)
    drift = judge_layer(window_of(rng, reference.edges, 2, shift=5.0), reference, 1e-5)
    assert not drift.drifting and drift.score == 0.0


# -- the monitor, with a store in memory ---------------------------------------------------------------------


class MemoryStore:
    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}
        self.references: dict[tuple[str, int], Reference] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("The run database is unreachable: test outage")

    def save_window(self, window: Window) -> bool:
        self._check()
        if window.window_id in self.windows:
            return False
        self.windows[window.window_id] = window
        return True

    def list_windows(self, model: str, version: int | None, limit: int) -> list[Window]:
        self._check()
        found = [w for w in self.windows.values() if w.model == model and version in (None, w.version)]
        return sorted(found, key=lambda w: w.ended, reverse=True)[:limit]

    def get_window(self, window_id: str) -> Window:
        self._check()
        if window_id not in self.windows:
            raise NotFound(f"no window {window_id}")
        return self.windows[window_id]

    def get_reference(self, model: str, version: int) -> Reference | None:
        self._check()
        return self.references.get((model, version))

    def offer_reference(self, reference: Reference) -> Reference:
        self._check()
        return self.references.setdefault((reference.model, reference.version), reference)

    def replace_reference(self, reference: Reference) -> Reference:
        self._check()
        self.references[(reference.model, reference.version)] = reference
        return reference


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def monitor_with(store: MemoryStore, clock: Clock, reference_requests: int = 40) -> Monitor:
    config = MonitorConfig(
        window_seconds=60, reference_requests=reference_requests, false_alarms_per_week=1, replica="r1"
    )
    return Monitor(config, Rates(1.0, {}), Budget(1.0), store, clock=clock)


def device_counts(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """What the engine's `frozen_histogram` returns for a tensor this small (every value, no sample)."""
    finite = values[np.isfinite(values)].ravel()
    buckets = np.searchsorted(np.asarray(edges), finite, side="right")
    return np.concatenate((np.bincount(buckets, minlength=len(edges) + 1), [np.sum(finite == 0.0)]))


def feed(monitor: Monitor, rng: np.random.Generator, clock: Clock, n: int, shift: float = 0.0, batch: int = 32) -> None:
    """Sampled requests as the inspector sends them: summaries, and counts on the edges the monitor gives."""
    for _ in range(n):
        values = {
            "dense": np.maximum((rng.normal(size=(batch, 16)) + shift) @ WEIGHTS, 0.0).astype(np.float32),
            "head": np.tanh(rng.normal(size=(batch, 8)) + shift).astype(np.float32),
        }
        edges = monitor.frozen_edges("m", 1)
        counts = {point: device_counts(values[point], e) for point, e in edges}
        summaries = {point: summarize(v) for point, v in values.items()}
        monitor.offer("m", 1, Sample(summaries, 0, never, at=clock.now, counts=counts, edges=edges))
        monitor.process_pending()  # what the monitor's thread does, driven by hand


def test_the_monitor_builds_a_reference_judges_windows_and_names_the_first_drifting_layer() -> None:
    store, clock = MemoryStore(), Clock()
    monitor = monitor_with(store, clock)
    rng = np.random.default_rng(8)
    feed(monitor, rng, clock, 50)  # 10 choose the edges, the next 40 are counted on them
    assert ("m", 1) in store.references and store.references[("m", 1)].source == "traffic"
    clock.now += timedelta(seconds=61)
    monitor.process_pending()  # the reference window closes
    for _ in range(3):
        feed(monitor, rng, clock, 20)
        clock.now += timedelta(seconds=61)
        monitor.process_pending()
    judged = [w for w in store.windows.values() if w.drift]
    assert len(judged) == 3 and not any(w.drifting for w in judged)
    feed(monitor, rng, clock, 20, shift=0.5)
    clock.now += timedelta(seconds=61)
    monitor.process_pending()
    last = max(store.windows.values(), key=lambda w: w.ended)
    assert last.drifting[0] == "dense"  # nearest the input comes first


def test_requests_of_another_batch_size_from_the_same_traffic_do_not_drift() -> None:
    """Counted on the reference's edges on the device, a request's shares do not depend on its own min..max:
    a client sending batches of 4 instead of 32 is the same traffic (projected histograms called it drift)."""
    store, clock = MemoryStore(), Clock()
    monitor = monitor_with(store, clock)
    rng = np.random.default_rng(13)
    feed(monitor, rng, clock, 50)
    clock.now += timedelta(seconds=61)
    monitor.process_pending()
    for batch in (4, 8, 32):
        feed(monitor, rng, clock, 30, batch=batch)
        clock.now += timedelta(seconds=61)
        monitor.process_pending()
    judged = [w for w in store.windows.values() if w.drift]
    assert len(judged) == 3 and not any(w.drifting for w in judged), [
        {name: round(d.score, 2) for name, d in w.drift.items()} for w in judged
    ]


def test_windows_closed_while_the_database_is_down_are_not_lost() -> None:
    store, clock = MemoryStore(), Clock()
    monitor = monitor_with(store, clock, reference_requests=5)
    rng = np.random.default_rng(9)
    store.down = True
    feed(monitor, rng, clock, 10)
    clock.now += timedelta(seconds=61)
    monitor.process_pending()  # the store is down: the window stays in memory, readable
    status = monitor.status("m", 1, 5)
    assert len(status.windows) == 1 and status.reference is not None
    store.down = False
    monitor.process_pending()  # the unsaved reference reaches the store once it answers
    assert ("m", 1) in store.references


def test_nan_in_a_sampled_request_is_reported_at_once() -> None:
    store, clock = MemoryStore(), Clock()
    monitor = monitor_with(store, clock)
    values = np.ones((4, 3), np.float32)
    values[0, 0] = np.nan
    monitor.offer("m", 1, Sample({"dense": summarize(values)}, 2, never, at=clock.now))
    monitor.process_pending()
    status = monitor.status("m", 1, 5)
    assert status.nonfinite_samples == 1 and status.events[0].kind == "non-finite"
    assert status.events[0].layers == ("dense", "<inputs>")
    assert monitor.health("m", 1)[0].non_finite == 1  # the gauges see it before any window closes


def test_a_caller_picks_a_window_as_the_reference_and_only_one_of_its_own_version() -> None:
    store, clock = MemoryStore(), Clock()
    monitor = monitor_with(store, clock, reference_requests=10)
    rng = np.random.default_rng(10)
    feed(monitor, rng, clock, 12)  # 2 choose the edges, the next 10 are counted on them
    clock.now += timedelta(seconds=61)
    monitor.process_pending()
    feed(monitor, rng, clock, 12)
    clock.now += timedelta(seconds=61)
    monitor.process_pending()
    judged = next(w for w in store.windows.values() if w.reference_id)
    chosen = monitor.set_reference("m", 1, judged.window_id)
    assert chosen is not None and chosen.source == f"window:{judged.window_id}"
    assert store.references[("m", 1)].reference_id == chosen.reference_id
    first = next(w for w in store.windows.values() if not w.reference_id)
    with pytest.raises(FailedPrecondition, match="still being made"):
        monitor.set_reference("m", 1, first.window_id)
    with pytest.raises(FailedPrecondition, match=r"a window of model 'm' version 2; window w-\w+ is of 'm' version 1"):
        monitor.set_reference("m", 2, judged.window_id)


def test_reference_from_window_keeps_the_edges_it_was_judged_on() -> None:
    rng = np.random.default_rng(11)
    layer_reference = build_layer_reference([relu_request(rng) for _ in range(30)], seed=2)
    now = datetime.now(UTC)
    base = Reference("ref-a", "m", 1, now, "traffic", 30, {"dense": layer_reference})
    window = Window("w-x", "m", 1, "r", now, now, "ref-a", {"dense": window_of(rng, layer_reference.edges, 8)})
    chosen = reference_from_window(window, base, "ref-w-x", now)
    np.testing.assert_allclose(chosen.layers["dense"].edges, layer_reference.edges)
    assert chosen.requests == 8


def test_reference_requests_are_kept_compactly_and_read_back_as_they_were() -> None:
    from layerscope.service.monitoring.compact import CompactSummary

    values = np.maximum(np.random.default_rng(12).normal(size=(64, 512)), 0).astype(np.float32)
    values[0, 0] = np.nan
    summary = summarize(values)
    compact = CompactSummary.of(summary)
    back = compact.summary()
    assert back.histogram == summary.histogram and (back.nan, back.count) == (summary.nan, summary.count)
    np.testing.assert_allclose(back.unit_activity, summary.unit_activity, rtol=1e-6)
    assert (back.mean, back.std, back.histogram_range) == (summary.mean, summary.std, summary.histogram_range)
    assert compact.nbytes < 4 * (512 + 32) + 200  # 4 bytes a value, where the Summary's tuples take ~32


def test_sampling_skips_for_a_backlog_not_for_concurrency_and_counts_what_it_skipped() -> None:
    store, clock = MemoryStore(), Clock()
    config = MonitorConfig(window_seconds=60, reference_requests=5, false_alarms_per_week=1, replica="r")
    monitor = Monitor(config, Rates(1.0, {}), Budget(1.0), store, clock=clock, busy_queue=4)
    assert not monitor.should_sample("m", 1, 0)  # not warm yet: the live capture is still being traced
    monitor.warmed("m", 1)
    assert monitor.should_sample("m", 1, 0) and monitor.should_sample("m", 1, 3)  # a few concurrent callers
    assert not monitor.should_sample("m", 1, 4)  # a backlog: the sample would add to it
    assert monitor.status("m", 1, 1).skipped == {"warming": 1, "busy": 1}
