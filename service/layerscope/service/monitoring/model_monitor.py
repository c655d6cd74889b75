"""One model version watched while it serves: its reference, its open window, what it has seen.

Not thread-safe on its own: the `Monitor` calls it from its one thread, under its lock.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from layerscope.service.domain.model_health import LayerHealth
from layerscope.service.domain.summary import Summary
from layerscope.service.monitoring.compact import CompactSummary
from layerscope.service.monitoring.drift import Reference, judge, reference_from_rows
from layerscope.service.monitoring.projection import choose_edges
from layerscope.service.monitoring.window import LayerWindow, Window, features

log = logging.getLogger(__name__)

Measure = Callable[[str, Summary], tuple[float | None, float | None]]
"""(capture point, its activation summary) -> (dead-unit fraction, saturated fraction), None where the
health rules do not judge that layer (no dead units in a softmax, no saturation in a ReLU)."""
FrozenEdges = tuple[tuple[str, tuple[float, ...]], ...]
"""(capture point, bin edges) as a sampled request carries them to the engine."""
EDGE_REQUESTS = 50
"""Sampled requests whose pooled values choose a new version's bin edges (at most a quarter of the reference's
requests); the reference's statistics then come from the next requests, counted on those edges."""
DEAD_IN_A_ROW = 3
"""Sampled requests in a row with every unit of a layer inactive before it is reported dead at once (one
odd batch is not a dead layer)."""
RECENT_EVENTS = 20


@dataclass(frozen=True)
class Sample:
    """One sampled request: its activation summaries (model order) and the non-finite count of its inputs."""

    summaries: Mapping[str, Summary]
    input_nonfinite: int
    measure: Measure
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    counts: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Capture point -> its activation counted on the device on `edges` (`projection.counted`)."""
    edges: FrozenEdges = ()
    """The edges the request was counted on (what `ModelMonitor.frozen_edges` said when it was sent)."""


@dataclass(frozen=True)
class MonitorEvent:
    """Something reported at once, not after a window: non-finite values, a layer that died."""

    at: datetime
    kind: str
    """"non-finite" or "layer-died"."""
    layers: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class MonitorConfig:
    window_seconds: float
    reference_requests: int
    false_alarms_per_week: float
    replica: str
    recent_windows: int = 12

    @property
    def windows_per_week(self) -> float:
        return 7 * 24 * 3600 / self.window_seconds


class ModelMonitor:
    def __init__(self, model: str, version: int, rate: float, config: MonitorConfig) -> None:
        self.model = model
        self.version = version
        self.rate = rate
        self.config = config
        self.reference: Reference | None = None
        self.reference_loaded = False
        """Whether the store was asked for a reference (kept across restarts, shared by replicas)."""
        self.collecting: list[dict[str, CompactSummary]] = []
        """The summaries of the requests that choose the edges, compactly (see `compact`)."""
        self.chosen: dict[str, np.ndarray] | None = None
        """The edges chosen for the reference being made (None before, and once the reference exists)."""
        self.rows: dict[str, list[tuple[np.ndarray, float]]] = {}
        """Capture point -> (features, weight) of each reference request, counted on the chosen edges."""
        self.ever_active: dict[str, np.ndarray] = {}
        self.reference_requests = 0
        self.frozen_edges: FrozenEdges = ()
        """The edges sampled requests are counted on now: the reference's, or those chosen for it."""
        self.current: Window | None = None
        self.recent: deque[Window] = deque(maxlen=config.recent_windows)
        self.events: deque[MonitorEvent] = deque(maxlen=RECENT_EVENTS)
        self.samples = 0
        self.nonfinite_samples = 0
        self.skipped: Counter[str] = Counter()
        self.judged: dict[str, tuple[bool, bool]] = {}
        """Capture point -> whether the rules judge its (dead units, saturation)."""
        self._dead_streak: Counter[str] = Counter()
        self._reported_dead: set[str] = set()
        self._nonfinite_in_window = False

    # -- samples ---------------------------------------------------------------------------------------------

    def add(self, sample: Sample) -> None:
        self.samples += 1
        if self.reference is None:
            self._collect(sample)
        window = self._window(sample.at)
        window.input_nonfinite += sample.input_nonfinite
        nonfinite = [p for p, s in sample.summaries.items() if s.non_finite] + (
            ["<inputs>"] if sample.input_nonfinite else []
        )
        dead_now = []
        for point, summary in sample.summaries.items():
            dead, saturated = sample.measure(point, summary)
            self.judged[point] = (dead is not None, saturated is not None)
            layer = window.layers.get(point)
            if layer is None:
                layer = window.layers[point] = LayerWindow()
            edges = self._edges(window, point, summary)
            layer.add(summary, edges, saturated, _counts_on(sample, point, edges))
            if dead is not None and dead >= 1.0 and len(summary.unit_activity) > 1:
                self._dead_streak[point] += 1
                if self._dead_streak[point] >= DEAD_IN_A_ROW and point not in self._reported_dead:
                    dead_now.append(point)
            else:
                self._dead_streak[point] = 0
                self._reported_dead.discard(point)
        if nonfinite:
            self.nonfinite_samples += 1
            if not self._nonfinite_in_window:  # once per window: the counter says how often
                self._nonfinite_in_window = True
                self._event(
                    sample.at,
                    "non-finite",
                    nonfinite,
                    "NaN or Inf in a sampled request: first in "
                    f"{nonfinite[0]!r}"
                    + (f" ({sample.input_nonfinite} in the inputs)" if sample.input_nonfinite else ""),
                )
        if dead_now:
            self._reported_dead.update(dead_now)
            self._event(
                sample.at,
                "layer-died",
                dead_now,
                f"every unit of {dead_now[0]!r} stayed inactive in {DEAD_IN_A_ROW} sampled requests in a row",
            )

    def _collect(self, sample: Sample) -> None:
        """The reference in two steps: the first requests choose each layer's edges (their values pooled), the
        next `reference_requests` are counted on those edges on the device and give the statistics."""
        if self.chosen is None:
            self.collecting.append({point: CompactSummary.of(s) for point, s in sample.summaries.items()})
            if len(self.collecting) >= min(EDGE_REQUESTS, max(2, self.config.reference_requests // 4)):
                points = list(self.collecting[0])
                self.chosen = {p: choose_edges([c[p].summary() for c in self.collecting if p in c]) for p in points}
                self.collecting = []
                self.frozen_edges = _frozen(self.chosen)
            return
        if self.reference_requests >= self.config.reference_requests:
            return
        counted = False
        for point, summary in sample.summaries.items():
            edges = self.chosen.get(point)
            counts = _counts_on(sample, point, edges)
            if edges is None or counts is None:
                continue
            counted = True
            self.rows.setdefault(point, []).append((features(summary, edges, counts), float(summary.count)))
            activity = np.asarray(summary.unit_activity, dtype=np.float64)
            before = self.ever_active.get(point)
            self.ever_active[point] = (
                activity if before is None or before.shape != activity.shape else np.maximum(before, activity)
            )
        self.reference_requests += int(counted)

    @property
    def reference_progress(self) -> int:
        """Requests collected towards the reference (the edges' first, then the counted ones)."""
        return self.reference_requests if self.chosen is not None else len(self.collecting)

    def reference_ready(
        self, seed_of: Callable[[str], int] = lambda point: zlib.crc32(point.encode())
    ) -> Reference | None:
        """The reference built from the collected requests, once there are enough (None before)."""
        if self.reference is not None or self.chosen is None:
            return None
        if self.reference_requests < self.config.reference_requests:
            return None
        layers = {}
        for point, rows in self.rows.items():
            units = len(self.ever_active.get(point, ()))
            usable = [(x, w) for x, w in rows if len(x) == len(rows[0][0])]
            if len(usable) < 2:
                continue
            judged_dead = self.judged.get(point, (False, False))[0] and units > 0
            dead = float(np.mean(self.ever_active[point] <= 0.0)) if judged_dead else None
            matrix, weights = np.stack([x for x, _ in usable]), np.array([w for _, w in usable])
            layers[point] = reference_from_rows(matrix, weights, self.chosen[point], units, seed_of(point), dead)
        return Reference(
            reference_id=f"ref-{uuid.uuid4().hex}",
            model=self.model,
            version=self.version,
            created_at=datetime.now(UTC),
            source="traffic",
            requests=self.reference_requests,
            layers=layers,
        )

    def adopt(self, reference: Reference) -> None:
        """Use this reference from now on (the store's, which may be another replica's or a caller's)."""
        self.reference = reference
        self.frozen_edges = _frozen({p: r.edges for p, r in reference.layers.items()})
        self.restart_reference(keep=reference)

    def restart_reference(self, keep: Reference | None = None) -> None:
        """Forget what was collected towards a reference; without `keep`, make a new one from traffic."""
        self.reference = keep
        self.collecting, self.chosen, self.rows, self.ever_active = [], None, {}, {}
        self.reference_requests = 0
        if keep is None:
            self.frozen_edges = ()

    # -- windows ---------------------------------------------------------------------------------------------

    def close_if_due(self, now: datetime) -> Window | None:
        """The open window, closed and judged, once it is `window_seconds` old (None otherwise)."""
        window = self.current
        if window is None or (now - window.started).total_seconds() < self.config.window_seconds:
            return None
        return self.close(now)

    def close(self, now: datetime) -> Window | None:
        """The open window, closed now and judged (None when none is open)."""
        window = self.current
        if window is None:
            return None
        window.ended = now
        self.current = None
        self._nonfinite_in_window = False
        if self.reference is not None and window.reference_id == self.reference.reference_id:
            judge(window, self.reference, self.config.windows_per_week, self.config.false_alarms_per_week)
        self.recent.append(window)
        if window.drifting:
            log.warning(
                "model %s version %s: layers drifting: %s (first: %s)",
                self.model,
                self.version,
                ", ".join(window.drifting),
                window.drifting[0],
            )
        return window

    def health(self) -> tuple[LayerHealth, ...]:
        """Per-layer health of the open window, or of the last closed one while the open one is empty."""
        window = (
            self.current
            if self.current is not None and self.current.requests
            else (self.recent[-1] if self.recent else None)
        )
        if window is None:
            return ()
        out = []
        for point, layer in window.layers.items():
            dead_judged, saturated_judged = self.judged.get(point, (False, False))
            activity = layer.unit_activity
            out.append(
                LayerHealth(
                    layer=point,
                    dead_unit_fraction=float(np.mean(activity <= 0.0)) if dead_judged and activity.size else None,
                    saturated_fraction=layer.saturated_sum / layer.saturated_requests
                    if saturated_judged and layer.saturated_requests
                    else None,
                    non_finite=layer.nan + layer.posinf + layer.neginf,
                    activation_rms=float(np.sqrt(layer.squares / layer.finite)) if layer.finite else 0.0,
                )
            )
        return tuple(out)

    def _window(self, at: datetime) -> Window:
        if self.current is None:
            self.current = Window(
                window_id=f"w-{uuid.uuid4().hex}",
                model=self.model,
                version=self.version,
                replica=self.config.replica,
                started=at,
                ended=at,
                reference_id=self.reference.reference_id if self.reference else None,
                layers={},
                edges={p: r.edges for p, r in self.reference.layers.items()} if self.reference else {},
            )
        return self.current

    def _edges(self, window: Window, point: str, summary: Summary) -> np.ndarray | None:
        """The frozen edges of this layer, when the window is judged against the current reference."""
        if self.reference is None or window.reference_id != self.reference.reference_id:
            return None
        reference = self.reference.layers.get(point)
        return reference.edges if reference is not None and reference.units == len(summary.unit_activity) else None

    def _event(self, at: datetime, kind: str, layers: list[str], message: str) -> None:
        self.events.append(MonitorEvent(at, kind, tuple(layers), message))
        log.warning("model %s version %s: %s", self.model, self.version, message)


def _frozen(edges: Mapping[str, np.ndarray]) -> FrozenEdges:
    return tuple((point, tuple(float(e) for e in values)) for point, values in edges.items())


def _counts_on(sample: Sample, point: str, edges: np.ndarray | None) -> np.ndarray | None:
    """The device's counts of this point, when they were taken on exactly these edges."""
    counts = sample.counts.get(point)
    if counts is None or edges is None:
        return None
    sent = dict(sample.edges).get(point)
    if sent is None or len(sent) != len(edges) or not np.array_equal(np.asarray(sent), edges):
        return None
    return counts
