"""The workers' metrics, told by each `ModelWorker` (the `WorkerObserver` the composition root hands over)."""

from __future__ import annotations

from contextlib import suppress

from layerscope.service.telemetry import Telemetry


class WorkerMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def restarted(self, model: str, cause: str) -> None:
        self._telemetry.worker_restarts.labels(model, cause).inc()

    def resident(self, model: str, version: int, size: int | None) -> None:
        gauge = self._telemetry.worker_resident_bytes
        if size is None:
            with suppress(KeyError):  # never set, or removed already
                gauge.remove(model, str(version))
        else:
            gauge.labels(model, str(version)).set(size)

    def crossed(self, model: str, seconds: float) -> None:
        self._telemetry.worker_crossing_seconds.labels(model).observe(seconds)
