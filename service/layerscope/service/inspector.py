"""The application core: every use case the transport exposes, with storage and metrics.

Heavy work (TensorFlow, SQL) runs in worker threads so the event loop keeps answering other calls.
Nothing here knows gRPC; domain errors carry the messages the transport passes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from layerscope.service import cancellation, model_diagnosis, model_health
from layerscope.service.compare import Comparison, compare
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.synthetic_inputs import FREE_DIMENSION
from layerscope.service.domain import call_budget
from layerscope.service.domain.capture import LIVE_SELECTION, CaptureRequest, CaptureResult, check_full_size
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.inputs import check_inputs
from layerscope.service.domain.model_health import ModelHealth
from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.domain.runs import (
    RESERVED_PREFIXES,
    LayerSummaryRecord,
    RunPage,
    RunQuery,
    RunRecord,
    RunStore,
    check_run_id,
)
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.training import TrainingOptions
from layerscope.service.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    LimitExceeded,
    ModelUnavailable,
    Overloaded,
)
from layerscope.service.monitoring.model_monitor import Sample
from layerscope.service.monitoring.monitor import Monitor, MonitorSnapshot, MonitorStatus
from layerscope.service.monitoring.window import Window
from layerscope.service.runtime import device
from layerscope.service.settings import Settings
from layerscope.service.telemetry import Telemetry

if TYPE_CHECKING:  # the engine and the models import TensorFlow; the use cases only name their types
    from layerscope.service.models.lifecycle import ModelLifecycle, Version
    from layerscope.service.models.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureOutcome:
    run: RunRecord
    result: CaptureResult


@dataclass(frozen=True)
class DiagnoseOutcome:
    run: RunRecord
    findings: list[Finding]
    inputs_used: str


class ModelQueue:
    """Bounds the calls waiting for or running on each model, so one hot model cannot take every thread."""

    def __init__(self, limit: int, telemetry: Telemetry) -> None:
        self._limit = limit
        self._telemetry = telemetry
        self._depth: dict[tuple[str, int], int] = {}

    @contextmanager
    def admit(self, model: LoadedModel) -> Iterator[int]:
        """Admits one call on `model`; yields how many others were queued or running on it."""
        key = (model.info.name, model.info.version)
        depth = self._depth.get(key, 0)
        if depth >= self._limit:
            self._telemetry.rejections.labels("model_queue").inc()
            raise Overloaded(
                f"Model '{key[0]}' version {key[1]} has {depth} calls queued or running, its limit; "
                "expected fewer concurrent calls. Retry later."
            )
        self._depth[key] = depth + 1
        try:
            yield depth
        finally:
            self._depth[key] -= 1


class Inspector:
    """The use cases the transport exposes: it admits calls (per-model queue, batch and byte limits), runs
    them off the event loop, stores their runs and records their metrics. Models come and go through the
    `ModelLifecycle`."""

    def __init__(
        self,
        settings: Settings,
        models: ModelLifecycle,
        store: RunStore,
        diagnoser: Diagnoser,
        telemetry: Telemetry,
        monitor: Monitor | None = None,
    ) -> None:
        self._settings = settings
        self._models = models
        self._store = store
        self._diagnoser = diagnoser
        self._telemetry = telemetry
        self._queue = ModelQueue(settings.max_queue_per_model, telemetry)
        self._bounds = call_budget.CallBounds(
            settings.max_batch_size, settings.max_call_layer_bytes, settings.max_call_total_bytes
        )
        self._gauges = model_health.HealthGauges.of(diagnoser)
        self._monitor = monitor
        self._background: set[asyncio.Task[None]] = set()

    # -- models -----------------------------------------------------------------------------------------

    async def upload_model(
        self,
        name: str,
        version: int | None,
        chunks: AsyncIterator[bytes],
        sha256: str,
        load: bool,
        transient: bool = False,
    ) -> ModelInfo:
        """Store, prove and load an archive; or, `transient`, load it without storing it (an audit through the
        server): no live monitoring, no metric, and its runs are audit runs."""
        if transient:
            return await self._models.upload_transient(name, version, chunks, sha256, self._settings.max_upload_bytes)
        info = await self._models.upload(name, version, chunks, sha256, load, self._settings.max_upload_bytes)
        self._warm_monitoring([info])
        return info

    async def expire_transient(self) -> list[ModelInfo]:
        """Unload transient models that no call has used for `transient_model_seconds`."""
        return await self._models.expire()

    def discard_transient(self) -> None:
        """Remove the files of every transient model (the server stops)."""
        self._models.discard_transient()

    async def load_repository(self) -> list[ModelInfo]:
        return await self.load_found(await self.scan_repository())

    async def scan_repository(self) -> list[Version]:
        """The repository's models to load (newest versions not loaded yet): each is "loading" from now on,
        answering UNAVAILABLE rather than NOT_FOUND until `load_found` has loaded it or given up."""
        return await self._models.scan_new()

    async def load_found(self, found: list[Version]) -> list[ModelInfo]:
        """Load what `scan_repository` found, a few at once; returns the versions loaded."""
        loaded = await self._models.load_found(found)
        self._warm_monitoring(loaded)
        return loaded

    def stop_loading(self) -> None:
        """The server stops: found models not yet loading are not loaded."""
        self._models.stop_loading()

    def load_times(self) -> list[tuple[str, int, float]]:
        """(name, version, seconds its load took) of the loaded models; transient ones left out."""
        return [
            (m.info.name, m.info.version, m.load_seconds)
            for m in self._models.loaded()
            if m.load_seconds is not None and not m.info.transient
        ]

    async def load_model(self, ref: ModelRef) -> ModelInfo:
        info = await self._models.load(ref)
        self._warm_monitoring([info])
        return info

    def _warm_monitoring(self, infos: list[ModelInfo]) -> None:
        """Trace each new version's live capture function in the background, so that no sampled request waits
        for a trace: until it is ready, requests due for sampling run unsampled (counted as "warming")."""
        if self._monitor is None:
            return
        loaded = {(m.info.name, m.info.version): m for m in self._models.loaded()}
        for info in infos:
            model = loaded.get((info.name, info.version))
            if model is not None and not self._monitor.is_warm(info.name, info.version):
                task = asyncio.create_task(asyncio.to_thread(self._warm, self._monitor, model))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    @staticmethod
    def _warm(monitor: Monitor, model: LoadedModel) -> None:
        cancellation.detach()  # started by a load call, it must not stop (or stop a worker) when that call ends
        spec_inputs = {
            spec.name: np.zeros((1, *(1 if d is None else d for d in spec.shape[1:])), dtype=spec.dtype)
            for spec in model.info.inputs
        }
        try:
            model.engine.warm(CaptureRequest(spec_inputs, LIVE_SELECTION))
        except Exception:  # sampled calls fall back to the plain forward pass anyway
            log.warning("monitoring: warming %s:%s failed", model.info.name, model.info.version, exc_info=True)
        monitor.warmed(model.info.name, model.info.version)

    def list_models(self) -> list[ModelInfo]:
        return [m.info for m in self._models.loaded()]

    async def unload_model(self, ref: ModelRef, remove: bool = False) -> ModelInfo:
        info = await self._models.unload(ref, remove)
        if self._monitor is not None:  # its open window is closed and stored, its series go
            await asyncio.to_thread(self._monitor.forget, info.name, info.version)
        return info

    def model_health(self) -> list[ModelHealth]:
        """The loaded models' health: per-layer gauges from live traffic (never an ad-hoc call's capture), the
        latest diagnosis's findings and the latest training probe's gradient norms."""
        served = [m for m in self._models.loaded() if not m.info.transient]  # an audit's model is no one's
        if self._monitor is None:
            return [m.health for m in served]
        live = self._monitor.health
        return [dataclasses.replace(m.health, layers=live(m.info.name, m.info.version)) for m in served]

    def monitor_snapshots(self) -> list[MonitorSnapshot]:
        """Monitoring of the versions loaded now (an unloaded version's series go with it)."""
        if self._monitor is None:
            return []
        loaded = {(m.info.name, m.info.version) for m in self._models.loaded() if not m.info.transient}
        return [s for s in self._monitor.snapshots() if (s.model, s.version) in loaded]

    # -- monitoring -------------------------------------------------------------------------------------

    async def monitor_status(self, ref: ModelRef, limit: int) -> MonitorStatus:
        """A loaded model version's live-traffic monitoring: rate, reference, recent windows, events."""
        monitor = self._require_monitor()
        model = _monitored(self._models.get(ref))
        return await asyncio.to_thread(monitor.status, model.info.name, model.info.version, limit)

    async def set_reference(self, ref: ModelRef, run_id: str | None) -> MonitorStatus:
        """A stored window or capture run as the version's reference, or (None) a new one from the next sampled
        requests."""
        monitor = self._require_monitor()
        model = _monitored(self._models.get(ref))
        name, version = model.info.name, model.info.version
        if run_id and not run_id.startswith(RESERVED_PREFIXES):
            run = await self.get_run(run_id)
            if (run.model_name, run.model_version, run.kind) != (name, version, "capture"):
                raise FailedPrecondition(
                    f"Expected a capture run of model '{name}' version {version}; run {run_id!r} is a {run.kind} of "
                    f"'{run.model_name}' version {run.model_version}."
                )
            activations = {s.layer: s.summary for s in run.summaries if s.kind == "activation"}
            await asyncio.to_thread(monitor.reference_from_capture, name, version, run_id, activations)
        else:
            await asyncio.to_thread(monitor.set_reference, name, version, run_id or None)
        return await asyncio.to_thread(monitor.status, name, version, 0)

    def _require_monitor(self) -> Monitor:
        if self._monitor is None:
            raise FailedPrecondition(
                "Expected live-traffic monitoring on; this server runs with LAYERSCOPE_MONITOR_SAMPLE_RATE=0."
            )
        return self._monitor

    # -- running ----------------------------------------------------------------------------------------

    async def predict(self, ref: ModelRef, inputs: Mapping[str, np.ndarray]) -> tuple[ModelInfo, dict[str, np.ndarray]]:
        model = self._models.get(ref)
        _check_input_dtypes(model.info)
        check_inputs(model.info.name, model.info.inputs, inputs)
        self._check_batch(inputs)
        self._check_work(model, inputs)  # before sampling: a sampled Predict obeys the same bound
        with self._queue.admit(model) as waiting:
            monitor = None if model.info.transient else self._monitor  # an audit's traffic is not live traffic
            if monitor is not None and monitor.should_sample(model.info.name, model.info.version, waiting):
                return model.info, await asyncio.to_thread(self._sampled_predict, monitor, model, inputs)
            return model.info, await asyncio.to_thread(model.engine.predict, inputs)

    def _sampled_predict(
        self, monitor: Monitor, model: LoadedModel, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The model's outputs from the capture path, whose summaries go to the monitor. A sample never fails
        its request: if the capture path fails, the plain forward pass answers and the skip is counted."""
        name, version = model.info.name, model.info.version
        with monitor.timing():
            try:
                edges = monitor.frozen_edges(name, version)
                result = model.engine.run(CaptureRequest(inputs, LIVE_SELECTION, frozen_edges=edges)).result
            except (Cancelled, ModelUnavailable, DeadlineExceeded):
                raise  # the call itself is over, or its model is: a plain forward pass would fare no better
            except Exception:
                log.warning(
                    "monitoring: sampled call on %s:%s failed; answered unsampled", name, version, exc_info=True
                )
                monitor.skip(name, version, "error")
                return model.engine.predict(inputs)
        activations = {p: kinds["activation"] for p, kinds in result.summaries.items() if "activation" in kinds}
        nonfinite = sum(int(a.size - np.count_nonzero(np.isfinite(a))) for a in inputs.values() if a.dtype.kind == "f")
        measure = self._gauges.measure(model.description)
        monitor.offer(name, version, Sample(activations, nonfinite, measure, counts=result.frozen, edges=edges))
        return result.outputs

    async def capture(
        self,
        ref: ModelRef,
        inputs: Mapping[str, np.ndarray],
        selection: Selection,
        run_id: str,
        max_bytes: int,
        statistics: str = "sampled",
        training: TrainingOptions | None = None,
    ) -> CaptureOutcome:
        """One forward pass (and gradients, with targets) of a loaded model, hooked per `selection`: summaries
        of every selected point, full tensors of those asked for; stored as a run of summaries, never tensors.

        Refusals come before the model runs: the run id, the input dtypes and batch size, unknown layer names
        and full tensors too large by their declared shapes (LimitExceeded), then the model's queue
        (Overloaded), then the targets' batch and the traced size. `max_bytes` (0: the server's limit) bounds
        the full tensors and the outputs together. A run is stored only once the capture has succeeded, and
        the model's health gauges are updated from its activations.
        """
        check_run_id(run_id)
        if max_bytes < 0:
            raise InvalidInput(f"Expected max_tensor_bytes >= 0 (0: the server's limit); received {max_bytes}.")
        model = self._models.get(ref)
        _check_input_dtypes(model.info)
        check_inputs(model.info.name, model.info.inputs, inputs)
        self._check_batch(inputs)
        self._check_work(model, inputs)
        limit = min(max_bytes or self._settings.max_tensor_bytes, self._settings.max_tensor_bytes)
        outputs = _check_selection(model, selection, inputs, limit)
        with self._queue.admit(model):
            targets, loss = (training.targets, training.loss) if training else (None, None)
            if targets:
                self._check_batch(targets)
            # One engine call (one crossing with workers): the engine sizes the full tensors from the traced
            # shapes and refuses before the model runs, so a refusal costs no device memory.
            request = CaptureRequest(inputs, selection, statistics, targets, loss, limit, outputs)
            return await asyncio.to_thread(self._capture_and_store, model, request, run_id, limit)

    def _capture_and_store(
        self, model: LoadedModel, request: CaptureRequest, run_id: str, limit: int
    ) -> CaptureOutcome:
        """The capture and its run on disk in one hop off the event loop: a second hop (to store the run)
        cost a small model's capture about as much as the spool write itself."""
        started = time.perf_counter()
        result = model.engine.run(request).result
        elapsed = time.perf_counter() - started
        if not model.info.transient:
            self._telemetry.capture_seconds.labels(model.info.name).observe(elapsed)
        for name, used in device.memory_in_use().items():
            self._telemetry.device_memory.labels(name).set(used)
        size = sum(a.nbytes for kinds in result.tensors.values() for a in kinds.values())
        check_full_size(size, limit, sum(a.nbytes for a in result.outputs.values()))
        self._telemetry.streamed_bytes.inc(size)
        kind = "audit" if model.info.transient else "capture"
        inputs = model_diagnosis.describe_inputs(request.inputs)
        run = self._record(model, kind, run_id, result, [], inputs, elapsed)
        cancellation.check()  # a caller told CANCELLED or DEADLINE_EXCEEDED gets no run stored in its name
        self._store.save_run(run, not run_id)
        return CaptureOutcome(run, result)

    async def diagnose(
        self,
        ref: ModelRef,
        inputs: Mapping[str, np.ndarray] | None,
        run_id: str,
        training: TrainingOptions | None = None,
    ) -> DiagnoseOutcome:
        """Findings of the static and runtime rules over the caller's inputs, or over generated probe inputs
        when there are none; with targets (`training`) also the training rules and a short training probe on
        a copy of the weights, never on the served model.

        Input and target batches are checked and the model's queue admits the call before anything runs.
        The run (its summaries, findings and probe) is stored only once the diagnosis has succeeded; the
        findings are counted in the metrics and the model's health gauges updated from them.
        """
        check_run_id(run_id)
        model = self._models.get(ref)
        _check_input_dtypes(model.info)
        if inputs:
            self._check_batch(inputs)
        if training and training.targets:
            self._check_batch(training.targets)
        rows = self._check_work(model, inputs)
        limits = model_diagnosis.ProbeLimits(self._settings.probe_steps, self._settings.max_probe_steps, rows)
        started = time.perf_counter()
        with self._queue.admit(model):
            diagnosis = await asyncio.to_thread(
                model_diagnosis.diagnose, model, self._diagnoser, inputs, training, limits
            )
        elapsed = time.perf_counter() - started
        audit = model.info.transient  # an audit's findings page no one and feed no health gauge
        if not audit:
            for finding in diagnosis.findings:
                self._telemetry.findings.labels(model.info.name, finding.code, finding.severity.value).inc()
            model.health = model_health.with_findings(model.health, diagnosis.findings)
        run = self._record(
            model,
            "audit" if audit else "diagnose",
            run_id,
            diagnosis.capture,
            diagnosis.findings,
            diagnosis.inputs_used,
            elapsed,
        )
        if diagnosis.probe is not None:
            run = dataclasses.replace(run, probe=diagnosis.probe)
            if not audit:
                model.health = model_health.with_probe(model.health, diagnosis.probe)
        await self._save(run, fresh=not run_id)
        return DiagnoseOutcome(run, diagnosis.findings, diagnosis.inputs_used)

    # -- runs -------------------------------------------------------------------------------------------

    async def list_runs(self, query: RunQuery) -> RunPage:
        return await asyncio.to_thread(self._store.list_runs, query)

    async def get_run(self, run_id: str) -> RunRecord:
        """A stored run; a monitoring window's id (w-..., h-...) reads that window as a run of kind "window"."""
        if run_id.startswith(RESERVED_PREFIXES) and self._monitor is not None:
            return window_run(await asyncio.to_thread(self._monitor.window, run_id))
        return await asyncio.to_thread(self._store.get_run, run_id)

    async def compare_runs(self, run_a: str, run_b: str) -> Comparison:
        a, b = await asyncio.gather(self.get_run(run_a), self.get_run(run_b))
        return compare(a, b)

    # -- helpers ----------------------------------------------------------------------------------------

    def _check_batch(self, inputs: Mapping[str, np.ndarray]) -> None:
        if not inputs:
            raise InvalidInput("Expected at least one input tensor; received none.")
        for name, array in inputs.items():
            batch = array.shape[0] if array.ndim else 0
            if batch > self._settings.max_batch_size:
                raise LimitExceeded(
                    f"Expected a batch of at most {self._settings.max_batch_size} for input '{name}'; received {batch}."
                )

    def _check_work(self, model: LoadedModel, inputs: Mapping[str, np.ndarray] | None) -> int:
        """The batch bound of `call_budget` (batch x what one sample declares), before anything runs. Without
        inputs, for the probe rows Diagnose generates (fewer for a model that accepts fewer): returns them."""
        info = model.info
        title = f"model '{info.name}' version {info.version}"
        if inputs:
            call_budget.check_inputs(title, info.sample_cost, info.inputs, self._bounds, inputs)
            return model_diagnosis.PROBE_ROWS
        rows = (model_diagnosis.MIN_PROBE_ROWS, model_diagnosis.PROBE_ROWS)
        return call_budget.probe_rows(title, info.sample_cost, info.inputs, self._bounds, rows, FREE_DIMENSION)

    def _record(
        self,
        model: LoadedModel,
        kind: str,
        run_id: str,
        result: CaptureResult,
        findings: list[Finding],
        inputs: str,
        elapsed: float,
    ) -> RunRecord:
        summaries = tuple(
            LayerSummaryRecord(point, k, summary)
            for point, kinds in result.summaries.items()
            for k, summary in kinds.items()
        )
        return RunRecord(
            run_id=run_id or uuid.uuid4().hex,
            model_name=model.info.name,
            model_version=model.info.version,
            model_sha256=model.info.sha256,
            kind=kind,
            created_at=datetime.now(UTC),
            batch_size=result.batch_size,
            inputs=inputs,
            device=model.engine.device,
            duration_seconds=elapsed,
            summaries=summaries,
            findings=tuple(findings),
        )

    async def _save(self, run: RunRecord, fresh: bool) -> None:
        """Hand the run to the store: with the run writer, on disk in its queue; the SQL write follows the
        answer. `fresh`: the server chose the id (no lookup for a retry is needed)."""
        await asyncio.to_thread(self._store.save_run, run, fresh)


def window_run(window: Window) -> RunRecord:
    """A monitoring window as a stored run reads: one activation summary per layer, no findings."""
    return RunRecord(
        run_id=window.window_id,
        model_name=window.model,
        model_version=window.version,
        model_sha256="",
        kind="window",
        created_at=window.ended,
        batch_size=window.requests,
        inputs=f"{window.requests} sampled requests on {window.replica}, {window.started:%Y-%m-%d %H:%M:%S} to "
        f"{window.ended:%H:%M:%S} UTC",
        device="",
        duration_seconds=(window.ended - window.started).total_seconds(),
        summaries=tuple(LayerSummaryRecord(p, "activation", s) for p, s in window.summaries().items()),
    )


def _monitored(model: LoadedModel) -> LoadedModel:
    if model.info.transient:
        raise FailedPrecondition(
            f"Expected a model under live monitoring; model '{model.info.name}' is transient (an audit through the "
            "server), and its calls are never sampled."
        )
    return model


def _check_input_dtypes(info: ModelInfo) -> None:
    """A model that takes strings (a StringLookup front end) cannot be fed numbers over the wire, nor probed."""
    for spec in info.inputs:
        try:
            kind = np.dtype(spec.dtype).kind
        except TypeError:
            kind = "O"
        if kind not in "biuf":
            raise InvalidInput(
                f"Expected a model whose inputs take numbers or booleans; model '{info.name}' input '{spec.name}' "
                f"takes {spec.dtype}, which no tensor on the wire holds. Feed it the output of its text layers."
            )


def _check_selection(model: LoadedModel, selection: Selection, inputs: Mapping[str, np.ndarray], limit: int) -> int:
    """Unknown layer names, and full tensors too large by the declared shapes alone: refused before the
    model is traced or run (the traced size, checked next, is exact). Returns the bytes of the model's
    outputs, which the stream's header carries and which count against the same limit."""
    selection.check_names(model.engine.layer_classes)
    batch = max((a.shape[0] if a.ndim else 1 for a in inputs.values()), default=1)
    declared = (
        (layer.name, layer.class_name, layer.output_shapes, [(w.kind, w.shape) for w in layer.weights])
        for layer in model.description.layers
    )
    outputs = sum(
        math.prod(1 if d is None else d for d in spec.shape[1:]) * int(batch) * np.dtype(spec.dtype).itemsize
        for spec in model.info.output_specs
    )
    check_full_size(selection.declared_full_bytes(declared, int(batch)), limit, outputs)
    return outputs
