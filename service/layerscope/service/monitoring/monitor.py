"""Live-traffic monitoring of every loaded model version: the part the request path and the readers see.

The request path asks `should_sample` (a counter and two cheap checks) and, for a sampled request, hands
its summaries to `offer`, which only puts them on a bounded queue: a sample never waits for a window, a
database or a lock held by a reader, and when the queue is full it is dropped and counted, never grown. One
thread takes samples off the queue, adds them to their model's open window, closes windows when they are
due (judging drift), builds references and stores both through a `MonitorStore` (which spools windows
while the database is down).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from layerscope.service.domain.model_health import LayerHealth
from layerscope.service.domain.runs import RESERVED_PREFIXES
from layerscope.service.domain.summary import Summary
from layerscope.service.errors import FailedPrecondition, NotFound, StoreUnavailable
from layerscope.service.monitoring.drift import Reference, reference_from_run, reference_from_window
from layerscope.service.monitoring.model_monitor import FrozenEdges, ModelMonitor, MonitorConfig, MonitorEvent, Sample
from layerscope.service.monitoring.sampling import Budget, Sampler
from layerscope.service.monitoring.window import Window

log = logging.getLogger(__name__)
QUEUE_LIMIT = 64
"""Samples waiting for the monitor's thread; beyond it new ones are dropped and counted. A sample holds every
layer's summaries, 40-50 KB for the bench CNNs (about 33 bytes a unit and 1 KB a layer), so the bound is
memory: a few MB, where the thread adds a sample in well under a millisecond (bench/README.md)."""
TICK_SECONDS = 0.25
WINDOW_PREFIXES = RESERVED_PREFIXES


class MonitorStore(Protocol):
    """Where windows and references live: shared by replicas, kept across restarts."""

    def save_window(self, window: Window) -> bool: ...
    def list_windows(self, model: str, version: int | None, limit: int) -> list[Window]: ...
    def get_window(self, window_id: str) -> Window: ...
    def get_reference(self, model: str, version: int) -> Reference | None: ...
    def offer_reference(self, reference: Reference) -> Reference:
        """Store `reference` unless the version has one; return the one stored (first writer wins)."""
        ...

    def replace_reference(self, reference: Reference) -> Reference: ...


@dataclass(frozen=True)
class Rates:
    """Share of requests sampled: a default and per-model overrides."""

    default: float
    per_model: dict[str, float]

    def of(self, model: str) -> float:
        return self.per_model.get(model, self.default)


@dataclass(frozen=True)
class MonitorStatus:
    model: str
    version: int
    sample_rate: float
    samples: int
    skipped: dict[str, int]
    nonfinite_samples: int
    reference: Reference | None
    reference_progress: tuple[int, int]
    """(sampled requests collected, needed) while the reference is being made."""
    windows: list[Window]
    """Newest first."""
    events: list[MonitorEvent]
    open_window: Window | None


@dataclass(frozen=True)
class MonitorSnapshot:
    """What the metrics collector reads of one model version at scrape time."""

    model: str
    version: int
    sample_rate: float
    samples: int
    skipped: dict[str, int]
    nonfinite_samples: int
    windows_closed: int
    reference_ready: bool
    last_window: Window | None
    reference: Reference | None


class Monitor:
    def __init__(
        self,
        config: MonitorConfig,
        rates: Rates,
        budget: Budget,
        store: MonitorStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        busy_queue: int = 4,
    ) -> None:
        self.config = config
        self._busy_queue = busy_queue
        """Other calls queued or running on the model from which sampling skips: a backlog, not mere concurrency
        (skipping at the first concurrent call left a model with four clients sampled at a twentieth of its rate)."""
        self._rates = rates
        self._budget = budget
        self._store = store
        self._clock = clock
        self._models: dict[tuple[str, int], ModelMonitor] = {}
        self._samplers: dict[tuple[str, int], Sampler] = {}
        self._closed: dict[tuple[str, int], int] = {}
        self._queue: queue.Queue[tuple[tuple[str, int], Sample] | None] = queue.Queue(QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._unsaved: dict[tuple[str, int], Reference] = {}
        self._warm: set[tuple[str, int]] = set()

    # -- the request path ------------------------------------------------------------------------------------

    def should_sample(self, model: str, version: int, waiting: int) -> bool:
        """Whether this request runs through the capture path. `waiting`: other calls queued or running on the
        model; from `busy_queue` of them on, the sample is skipped (counted as busy)."""
        key = (model, version)
        sampler = self._samplers.get(key)
        if sampler is None:
            sampler = self._samplers.setdefault(key, Sampler(self._rates.of(model)))
        if not sampler.take():
            return False
        if key not in self._warm:
            self.skip(model, version, "warming")
            return False
        if waiting >= self._busy_queue:
            self.skip(model, version, "busy")
            return False
        if not self._budget.allows():
            self.skip(model, version, "budget")
            return False
        return True

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Counts the time of a sampled call against the CPU budget."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._budget.spend(time.perf_counter() - started)

    def offer(self, model: str, version: int, sample: Sample) -> None:
        try:
            self._queue.put_nowait(((model, version), sample))
        except queue.Full:
            self.skip(model, version, "queue_full")

    def frozen_edges(self, model: str, version: int) -> FrozenEdges:
        """The edges a sampled request of this version is counted on (none before they are chosen)."""
        watched = self._models.get((model, version))  # read without the lock: an attribute swapped whole
        return watched.frozen_edges if watched is not None else ()

    def warmed(self, model: str, version: int) -> None:
        """The version's live capture function is traced: its requests may be sampled from now on."""
        self._warm.add((model, version))

    def is_warm(self, model: str, version: int) -> bool:
        return (model, version) in self._warm

    def skip(self, model: str, version: int, reason: str) -> None:
        with self._lock:
            self._model(model, version).skipped[reason] += 1

    # -- readers ---------------------------------------------------------------------------------------------

    def health(self, model: str, version: int) -> tuple[LayerHealth, ...]:
        with self._lock:
            watched = self._models.get((model, version))
            return watched.health() if watched else ()

    def snapshots(self) -> list[MonitorSnapshot]:
        with self._lock:
            return [
                MonitorSnapshot(
                    m.model,
                    m.version,
                    m.rate,
                    m.samples,
                    dict(m.skipped),
                    m.nonfinite_samples,
                    self._closed.get(key, 0),
                    m.reference is not None,
                    m.recent[-1] if m.recent else None,
                    m.reference,
                )
                for key, m in self._models.items()
            ]

    def status(self, model: str, version: int, limit: int) -> MonitorStatus:
        """The version's monitoring as a caller reads it: windows from the store (every replica's), or this
        replica's own recent windows while the database is unreachable."""
        with self._lock:
            watched = self._model(model, version)
            local = list(reversed(watched.recent))[:limit]
            status = MonitorStatus(
                model,
                version,
                watched.rate,
                watched.samples,
                dict(watched.skipped),
                watched.nonfinite_samples,
                watched.reference,
                (watched.reference_progress, self.config.reference_requests),
                local,
                list(reversed(watched.events)),
                watched.current,
            )
        try:
            stored = self._store.list_windows(model, version, limit)
        except StoreUnavailable:
            return status
        reference = status.reference or self._stored_reference(model, version)
        return MonitorStatus(**{**vars(status), "windows": stored or local, "reference": reference})

    def set_reference(self, model: str, version: int, window_id: str | None) -> Reference | None:
        """A stored window as the version's reference, or (None) a fresh one from the next sampled requests."""
        if window_id is not None and not window_id.startswith(WINDOW_PREFIXES):
            raise FailedPrecondition(f"Expected a monitoring window id (w-..., h-...); received {window_id!r}.")
        if window_id is None:
            with self._lock:
                watched = self._model(model, version)
                watched.restart_reference()
                watched.reference_loaded = True  # do not take the stored one back: the caller asked for new
            return None
        window = self._store.get_window(window_id)
        if (window.model, window.version) != (model, version):
            raise FailedPrecondition(
                f"Expected a window of model '{model}' version {version}; window {window_id} is of "
                f"'{window.model}' version {window.version}."
            )
        base = self._current_reference(model, version)
        if base is None or window.reference_id is None:
            raise FailedPrecondition(
                f"Expected a window judged against a reference (its bins come from one); window {window_id} was "
                "recorded while the first reference was still being made. Choose a later window."
            )
        return self._replace(model, version, reference_from_window(window, base, f"ref-{window_id}", self._clock()))

    def _replace(self, model: str, version: int, reference: Reference) -> Reference:
        stored = self._store.replace_reference(reference)
        with self._lock:
            self._model(model, version).adopt(stored)
        return stored

    def _current_reference(self, model: str, version: int) -> Reference | None:
        with self._lock:
            current = self._model(model, version).reference
        return current or self._stored_reference(model, version)

    def reference_from_capture(
        self, model: str, version: int, run_id: str, summaries: Mapping[str, Summary]
    ) -> Reference:
        """A stored capture run's activations as the version's expected traffic (see `reference_from_run`)."""
        base = self._current_reference(model, version)
        if base is None:
            raise FailedPrecondition(
                f"Expected model '{model}' version {version} to have a reference from traffic first: a capture run "
                "gives the expected activations, but the request-to-request variance that calibrates drift comes "
                f"from sampled traffic. Retry once GetMonitor shows a reference, or pass a window id, not {run_id!r}."
            )
        reference = reference_from_run(
            summaries, base, f"ref-run-{uuid.uuid4().hex[:16]}", self._clock(), f"run:{run_id}"
        )
        if not reference.layers:
            raise FailedPrecondition(
                f"Expected run {run_id!r} to hold activation summaries of the monitored layers; it holds none."
            )
        return self._replace(model, version, reference)

    def window(self, window_id: str) -> Window:
        """A closed window: stored (or spooled), or still in memory while the database is unreachable."""
        try:
            return self._store.get_window(window_id)
        except (NotFound, StoreUnavailable):
            with self._lock:
                kept = [w for m in self._models.values() for w in m.recent if w.window_id == window_id]
            if kept:
                return kept[0]
            raise

    def forget(self, model: str, version: int) -> None:
        """A version was unloaded: close its window now (stored), drop its state."""
        with self._lock:
            watched = self._models.pop((model, version), None)
            self._samplers.pop((model, version), None)
            self._warm.discard((model, version))
        if watched is not None:
            self._save(watched.close(self._clock()))

    # -- the monitor's thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="layerscope-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drain the queue, close every open window (stored or spooled), stop the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        for key in list(self._models):
            self.forget(*key)

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                item = self._queue.get(timeout=TICK_SECONDS)
            except queue.Empty:
                item = None
            self._step(item)

    def process_pending(self) -> None:
        """Add every queued sample, then close due windows and store what is due: one pass of the monitor's
        thread (tests drive it by hand)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._step(item, maintain=False)
        self._step(None)

    def _step(self, item: tuple[tuple[str, int], Sample] | None, maintain: bool = True) -> None:
        try:
            if item is not None:
                with self._lock:
                    self._model(*item[0]).add(item[1])
            if maintain:
                self._maintain()
        except Exception:  # the monitor must outlive any one bad sample or store error
            log.exception("monitoring: a sample or a window could not be processed")

    def _maintain(self) -> None:
        now = self._clock()
        with self._lock:
            watched = list(self._models.items())
        for key, model in watched:
            if not model.reference_loaded:
                self._load_reference(model)
            with self._lock:
                built = model.reference_ready()
                closed = model.close_if_due(now)
            if built is not None:
                self._offer(key, model, built)
            elif key in self._unsaved:
                self._offer(key, model, self._unsaved[key])
            if closed is not None:
                with self._lock:
                    self._closed[key] = self._closed.get(key, 0) + 1
                self._save(closed)

    def _load_reference(self, model: ModelMonitor) -> None:
        try:
            stored = self._store.get_reference(model.model, model.version)
        except StoreUnavailable:
            return  # tried again next tick
        with self._lock:
            model.reference_loaded = True
            if stored is not None:
                model.adopt(stored)

    def _offer(self, key: tuple[str, int], model: ModelMonitor, reference: Reference) -> None:
        with self._lock:
            model.adopt(reference)  # used at once; stored when the database answers
        try:
            stored = self._store.offer_reference(reference)
        except StoreUnavailable:
            self._unsaved[key] = reference
            return
        self._unsaved.pop(key, None)
        if stored.reference_id != reference.reference_id:  # another replica was first: one reference for all
            with self._lock:
                model.adopt(stored)

    def _save(self, window: Window | None) -> None:
        if window is None:
            return
        try:
            self._store.save_window(window)
        except Exception:
            log.exception("monitoring window %s of %s:%s not stored", window.window_id, window.model, window.version)

    def _stored_reference(self, model: str, version: int) -> Reference | None:
        try:
            return self._store.get_reference(model, version)
        except StoreUnavailable:
            return None

    def _model(self, model: str, version: int) -> ModelMonitor:
        key = (model, version)
        watched = self._models.get(key)
        if watched is None:
            watched = self._models[key] = ModelMonitor(model, version, self._rates.of(model), self.config)
        return watched
