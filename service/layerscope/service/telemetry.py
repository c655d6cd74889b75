"""Prometheus metrics on an injected registry.

Service metrics are declared together in `Telemetry`; per-model, per-layer health comes from
`ModelHealthCollector`, which reads the loaded models at scrape time, so an unloaded model's series vanish
without bookkeeping and the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from layerscope.service.domain.model_health import ModelHealth
from layerscope.service.monitoring.monitor import MonitorSnapshot

# 1 ms to 60 s: a tiny MLP captures in milliseconds, a big CNN at batch 128 on CPU in tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# 50 us to 1 s: a small call crosses to a model worker and back in a fraction of a millisecond.
CROSSING_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Telemetry:
    """Every service metric, bound to the registry it is given (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.rpcs = Counter(
            "layerscope_rpcs",
            "RPCs handled, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.rpc_seconds = Histogram(
            "layerscope_rpc_duration_seconds",
            "RPC latency, by method and status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge("layerscope_inflight_rpcs", "RPCs being handled now.", registry=registry)
        self.rejections = Counter(
            "layerscope_rejected_rpcs",
            "RPCs refused before running, by reason.",
            ["reason"],
            registry=registry,
        )
        self.capture_seconds = Histogram(
            "layerscope_capture_duration_seconds",
            "Forward pass plus capture, on the device, by model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.streamed_bytes = Counter(
            "layerscope_streamed_tensor_bytes", "Full-tensor bytes streamed to callers.", registry=registry
        )
        self.model_load_seconds = Histogram(
            "layerscope_model_load_duration_seconds",
            "Time to scan and load a model.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_load_failures = Counter(
            "layerscope_model_load_failures",
            "Models that failed to load, by reason.",
            ["reason"],
            registry=registry,
        )
        self.models_loaded = Gauge("layerscope_models_loaded", "Model versions loaded now.", registry=registry)
        self.start_seconds = Gauge(
            "layerscope_start_seconds",
            "Seconds from the process's start to each start-up phase: serving (health SERVING: calls answered) "
            "and models (every model found in the repository at start loaded or failed).",
            ["phase"],
            registry=registry,
        )
        self.db_write_seconds = Histogram(
            "layerscope_db_write_duration_seconds",
            "Time to write one run into the database (behind the response, by the run writer).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.spool_depth = Gauge(
            "layerscope_spool_depth",
            "Finished runs waiting in the spool for the database (the run writer's queue: a few while it keeps up).",
            registry=registry,
        )
        self.window_spool_depth = Gauge(
            "layerscope_window_spool_depth",
            "Closed monitoring windows waiting in the spool for the database.",
            registry=registry,
        )
        self.device_memory = Gauge(
            "layerscope_device_memory_bytes", "Accelerator memory in use.", ["device"], registry=registry
        )
        self.findings = Counter(
            "layerscope_findings",
            "Findings reported by diagnoses, by model, code and severity.",
            ["model", "code", "severity"],
            registry=registry,
        )
        self.worker_restarts = Counter(
            "layerscope_worker_restarts",
            "Model worker processes restarted after they stopped, by model and cause (SIGKILL, deadline, ...).",
            ["model", "cause"],
            registry=registry,
        )
        self.worker_resident_bytes = Gauge(
            "layerscope_worker_resident_memory_bytes",
            "Resident memory of each model worker process, read after each call.",
            ["model", "version"],
            registry=registry,
        )
        self.worker_crossing_seconds = Histogram(
            "layerscope_worker_crossing_seconds",
            "Time a call spent crossing to its model worker and back (shared memory, socket, pickling).",
            ["model"],
            buckets=CROSSING_BUCKETS,
            registry=registry,
        )


class ModelHealthCollector(Collector):
    """Per-layer gauges of the loaded models, read at scrape time and capped per model."""

    def __init__(self, source: Callable[[], Iterable[ModelHealth]], max_layer_series: int) -> None:
        self._source = source
        self._max_layer_series = max_layer_series

    def collect(self) -> Iterator[Metric]:
        """The gauges of every loaded model as of its latest capture, diagnosis and probe; at most
        `max_layer_series` layers (and gradient norms) per model, so a deep model cannot flood Prometheus."""
        labels = ["model", "version", "layer"]
        dead = GaugeMetricFamily(
            "layerscope_layer_dead_unit_fraction",
            "ReLU-family units that never activated in sampled traffic (the open monitoring window, else the last "
            "closed one), as the dead-units rule counts them.",
            labels=labels,
        )
        saturated = GaugeMetricFamily(
            "layerscope_layer_saturated_fraction",
            "Sigmoid/tanh outputs within the saturated-units rule's margin of a bound, in sampled traffic.",
            labels=labels,
        )
        non_finite = GaugeMetricFamily(
            "layerscope_layer_nonfinite_values", "NaN and Inf values in sampled traffic's window.", labels=labels
        )
        rms = GaugeMetricFamily("layerscope_layer_activation_rms", "Root mean square of activations.", labels=labels)
        findings = GaugeMetricFamily(
            "layerscope_model_findings",
            "Findings in the latest diagnosis of a loaded model.",
            labels=["model", "version", "code", "severity"],
        )
        gradients = GaugeMetricFamily(
            "layerscope_layer_gradient_norm",
            "L2 norm of the loss's gradient over each layer's trainable variables, at the first step of the "
            "latest training probe (a Diagnose with targets).",
            labels=labels,
        )
        loaded = GaugeMetricFamily(
            "layerscope_model_info",
            "1 for every model version loaded (transient ones, an audit's, left out): what the dashboard lists, "
            "with or without traffic, monitoring or findings yet.",
            labels=["model", "version"],
        )
        for health in self._source():
            version = str(health.version)
            loaded.add_metric([health.model, version], 1.0)
            for layer in islice(health.layers, self._max_layer_series):
                key = [health.model, version, layer.layer]
                if layer.dead_unit_fraction is not None:
                    dead.add_metric(key, layer.dead_unit_fraction)
                if layer.saturated_fraction is not None:
                    saturated.add_metric(key, layer.saturated_fraction)
                non_finite.add_metric(key, layer.non_finite)
                rms.add_metric(key, layer.activation_rms)
            for layer_name, norm in islice(health.gradient_norms.items(), self._max_layer_series):
                gradients.add_metric([health.model, version, layer_name], norm)
            for (code, severity), count in health.findings.items():
                findings.add_metric([health.model, version, code, severity], count)
        yield from (loaded, dead, saturated, non_finite, rms, findings, gradients)


class MonitorCollector(Collector):
    """Live-traffic monitoring of the loaded models, read at scrape time: samples and what was skipped, and
    per layer the drift of the last closed window (within the same cap on layer series as health)."""

    def __init__(self, source: Callable[[], Iterable[MonitorSnapshot]], max_layer_series: int) -> None:
        self._source = source
        self._max_layer_series = max_layer_series

    def collect(self) -> Iterator[Metric]:
        model = ["model", "version"]
        layer = [*model, "layer"]
        samples = CounterMetricFamily(
            "layerscope_monitor_samples", "Requests sampled into monitoring windows.", labels=model
        )
        skipped = CounterMetricFamily(
            "layerscope_monitor_skipped_samples",
            "Requests due for sampling that ran unsampled, by reason (busy: calls waiting on the model; budget: "
            "sampled calls past their share of time; queue_full: the monitor fell behind; warming: the version's "
            "live capture function is still being traced after load; error).",
            labels=[*model, "reason"],
        )
        nonfinite = CounterMetricFamily(
            "layerscope_monitor_nonfinite_samples",
            "Sampled requests with NaN or Inf in their inputs or any layer's activations.",
            labels=model,
        )
        windows = CounterMetricFamily("layerscope_monitor_windows", "Monitoring windows closed.", labels=model)
        rate = GaugeMetricFamily("layerscope_monitor_sample_rate", "Share of requests sampled.", labels=model)
        ready = GaugeMetricFamily(
            "layerscope_monitor_reference_ready", "1 once the version has a reference to judge drift by.", labels=model
        )
        score = GaugeMetricFamily(
            "layerscope_layer_drift_score",
            "Drift of the last closed window against the reference: the statistic over its calibrated threshold "
            "(>= 1 is drifting).",
            labels=layer,
        )
        drifting = GaugeMetricFamily(
            "layerscope_layer_drifting", "1 when the layer drifted in the last closed window.", labels=layer
        )
        first = GaugeMetricFamily(
            "layerscope_model_first_drifting_layer",
            "1 for the drifting layer nearest the input in the last closed window (absent when none drifts).",
            labels=layer,
        )
        reference_dead = GaugeMetricFamily(
            "layerscope_layer_reference_dead_unit_fraction",
            "The dead-unit fraction of a ReLU-family layer in the version's reference traffic.",
            labels=layer,
        )
        for snap in self._source():
            key = [snap.model, str(snap.version)]
            samples.add_metric(key, snap.samples)
            for reason, count in sorted(snap.skipped.items()):
                skipped.add_metric([*key, reason], count)
            nonfinite.add_metric(key, snap.nonfinite_samples)
            windows.add_metric(key, snap.windows_closed)
            rate.add_metric(key, snap.sample_rate)
            ready.add_metric(key, 1.0 if snap.reference_ready else 0.0)
            if snap.reference is not None:
                for name, ref in islice(snap.reference.layers.items(), self._max_layer_series):
                    if ref.dead_unit_fraction is not None:
                        reference_dead.add_metric([*key, name], ref.dead_unit_fraction)
            window = snap.last_window
            if window is None or not window.drift:
                continue
            for name, drift in islice(window.drift.items(), self._max_layer_series):
                score.add_metric([*key, name], drift.score)
                drifting.add_metric([*key, name], 1.0 if drift.drifting else 0.0)
            if window.drifting:
                first.add_metric([*key, window.drifting[0]], 1.0)
        yield from (samples, skipped, nonfinite, windows, rate, ready, score, drifting, first, reference_dead)


class ModelLoadCollector(Collector):
    """How long each loaded model version took to load, read at scrape time (an unloaded one's series goes)."""

    def __init__(self, source: Callable[[], Iterable[tuple[str, int, float]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        seconds = GaugeMetricFamily(
            "layerscope_model_load_seconds",
            "Time the loaded version took to load: scan, Keras load and, with model workers, the worker's start.",
            labels=["model", "version"],
        )
        for name, version, took in self._source():
            seconds.add_metric([name, str(version)], took)
        yield seconds
