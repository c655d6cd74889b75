"""The workers of the loaded models: the registry's way to open a model version when workers are on.

`open` scans the archive in the server first (a refused archive never reaches a process), then starts the
version's worker, which loads it; what the worker reports (info, description) becomes the LoadedModel, so
the server never holds the Keras model itself. The worker replaces today's trial load: a load that crashes
costs the worker, and is refused as the trial load would refuse it.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import asdict
from pathlib import Path

from layerscope.service.models.budget import ModelBudget, check_budget
from layerscope.service.models.registry import LoadedModel
from layerscope.service.models.repository import ARCHIVE
from layerscope.service.models.scanner import ScanLimits, scan_archive
from layerscope.service.settings import Settings
from layerscope.service.workers.model_worker import ModelWorker, State, WorkerObserver
from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import WorkerProcess
from layerscope.service.workers.protocol import Ready, WorkerSpec


class WorkerPool:
    def __init__(
        self,
        settings: Settings,
        observer: WorkerObserver,
        limits: ScanLimits | None = None,
        budget: ModelBudget | None = None,
    ) -> None:
        self._settings = settings
        self._observer = observer
        self._limits = limits
        self._budget = budget or ModelBudget()
        self._workers: set[ModelWorker] = set()
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def open(self, path: Path, name: str, version: int) -> LoadedModel:
        """A loaded model version whose engine is a new worker process (`ModelOpener.open`).

        The archive is scanned and its declared sizes checked here first, so a refused archive never
        starts a process; a worker that cannot load it raises what the in-process load would. The worker
        restarts from the same archive (the published one once an upload is published) under the
        settings' `RestartPolicy`.
        """
        report = scan_archive(path, self._limits or ScanLimits())
        check_budget(report.config, self._budget)  # a weightless bomb never gets a process

        def start() -> tuple[WorkerProcess, Ready]:
            # An upload is opened staged and then published beside it: a restart reads the published archive.
            current = path if path.exists() else path.with_name(ARCHIVE)
            return WorkerProcess.start(self._spec(current, name, version), self._settings.load_timeout_seconds)

        self.make_room(None)
        process, ready = start()
        settings = self._settings
        engine = ModelWorker(
            process,
            ready,
            start,
            RestartPolicy(settings.worker_max_crashes, settings.worker_crash_window_seconds),
            settings.worker_call_timeout_seconds,
            settings.load_timeout_seconds,
            self._observer,
            self.make_room,
            settings.worker_abandon_grace_seconds,
        )
        with self._lock:
            self._workers.add(engine)
        return LoadedModel(ready.info, engine, ready.description)

    def make_room(self, starting: ModelWorker | None) -> None:
        """Before a worker starts: while `max_workers` run, park the least recently used idle one (its model
        stays loaded; its next call starts it again). Busy workers are not parked: if all are busy, the pool
        runs over its bound for a while rather than fail a call."""
        limit = self._settings.max_workers
        with self._lock:
            running = sorted(
                (w for w in self._workers if w is not starting and w.state is State.READY), key=lambda w: w.last_used
            )
        for worker in running[: max(0, len(running) - limit + 1)]:
            worker.park()

    def close(self, model: LoadedModel) -> None:
        if isinstance(model.engine, ModelWorker):
            model.engine.close()
            with self._lock:
                self._workers.discard(model.engine)

    def usable(self, model: LoadedModel) -> bool:
        """False for a failed worker: loading the version again starts a new one."""
        return not isinstance(model.engine, ModelWorker) or model.engine.state is not State.FAILED

    def close_all(self, wait: float = 5.0) -> None:
        """Stop every worker (shutdown) and wait until they are gone, so none outlives the server."""
        with self._lock:
            workers, self._workers = self._workers, set()
        for worker in workers:
            worker.close()
        for worker in workers:
            worker.close(wait)

    def _spec(self, path: Path, name: str, version: int) -> WorkerSpec:
        settings = self._settings
        return WorkerSpec(
            path=str(path),
            name=name,
            version=version,
            block_prefix=f"layerscope-{os.getpid()}-{next(self._numbers)}",
            memory_limit_bytes=settings.worker_memory_limit_bytes,
            gpu_memory_fraction=settings.worker_gpu_memory_fraction,
            fused_statistics=settings.fused_statistics,
            kernel_cache_dir=str(settings.kernel_cache_dir) if settings.kernel_cache_dir else None,
            budget=asdict(self._budget),
        )
