"""The model-load metrics, told by the `ModelLifecycle` as each load ends (the `LoadObserver` the composition
root hands over), as `WorkerMetrics` are told by each model worker."""

from __future__ import annotations

from layerscope.service.telemetry import Telemetry


class LoadMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def loaded(self, seconds: float) -> None:
        self._telemetry.model_load_seconds.observe(seconds)

    def failed(self, error: Exception) -> None:
        self._telemetry.model_load_failures.labels(type(error).__name__).inc()

    def count(self, models: int) -> None:
        self._telemetry.models_loaded.set(models)
