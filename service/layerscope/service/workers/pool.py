"""The worker processes of the loaded models: the registry's way to open a model version when workers are on.

`open` scans the archive in the server first (a refused archive never reaches a process), then places the
version in a worker, which loads it; what the worker reports (info, description) becomes the LoadedModel, so
the server never holds the Keras model itself. The worker replaces the old trial load: a load that crashes
costs the worker, and is refused as the trial load would refuse it.

Placement: small archives from the repository share workers, `models_per_worker` to a process (one
TensorFlow runtime for several models: memory and start-up scale with processes, not models); an upload, a
large archive, and a model that crashed its shared worker get a process of their own. At most `max_workers`
processes run; past that the least recently used idle one is parked.
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
from layerscope.service.workers.model_worker import ModelWorker, State, WorkerEngine, WorkerObserver
from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import WorkerProcess
from layerscope.service.workers.protocol import ModelSpec, Started, WorkerSpec


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
        self._shared: dict[ModelWorker, int] = {}
        """Shared workers and their loads under way, so concurrent loads fill a worker without overfilling it."""
        self._lock = threading.Lock()
        self._numbers = itertools.count()

    def open(self, path: Path, name: str, version: int) -> LoadedModel:
        """A loaded model version whose engine runs in a worker process (`ModelOpener.open`).

        The archive is scanned and its declared sizes checked here first, so a refused archive never
        reaches a process; a worker that cannot load it raises what the in-process load would. A worker
        restarts from the same archive (the published one once an upload is published) under the
        settings' `RestartPolicy`.
        """
        report = scan_archive(path, self._limits or ScanLimits())
        check_budget(report.config, self._budget)  # a weightless bomb never gets a process
        spec = ModelSpec(str(path), name, version)
        if self._dedicated(path):
            worker = self._dedicated_worker()
            try:
                engine = worker.add(spec)
            except BaseException:
                self._forget(worker)
                raise
        else:
            engine = self._add_shared(spec)
        return LoadedModel(engine.ready.info, engine, engine.ready.description)

    def _dedicated(self, path: Path) -> bool:
        settings = self._settings
        uploaded = path.name != ARCHIVE  # staged: a model uploaded in this server's life
        large = path.stat().st_size > settings.shared_worker_max_archive_bytes
        return settings.models_per_worker == 1 or uploaded or large

    def _add_shared(self, spec: ModelSpec) -> WorkerEngine:
        with self._lock:
            worker = self._shared_with_room()
            self._shared[worker] += 1
        try:
            return worker.add(spec)
        finally:
            with self._lock:
                self._shared[worker] -= 1
                idle = self._shared[worker] == 0 and not worker.models
            if idle:  # its only load failed: no empty process stays behind
                self._forget(worker)

    def _shared_with_room(self) -> ModelWorker:
        """A shared worker with a free place (the caller holds the lock), or a new one."""
        capacity = self._settings.models_per_worker
        for worker, loading in self._shared.items():
            if worker.state not in (State.FAILED, State.CLOSED) and len(worker.models) + loading < capacity:
                return worker
        worker = self._make_worker(shared=True)
        self._shared[worker] = 0
        return worker

    def _dedicated_worker(self) -> ModelWorker:
        with self._lock:
            return self._make_worker(shared=False)

    def _make_worker(self, shared: bool) -> ModelWorker:
        """A worker without a process (the caller holds the lock): its first load starts one."""
        settings = self._settings

        def start(models: tuple[ModelSpec, ...]) -> tuple[WorkerProcess, Started]:
            # A new prefix each start: the watcher of the stopped process removes its blocks by prefix later.
            prefix = f"layerscope-{os.getpid()}-{next(self._numbers)}"
            return WorkerProcess.start(self._spec(models, prefix), settings.load_timeout_seconds)

        worker = ModelWorker(
            start,
            RestartPolicy(settings.worker_max_crashes, settings.worker_crash_window_seconds),
            settings.worker_call_timeout_seconds,
            settings.load_timeout_seconds,
            self._observer,
            self.make_room,
            settings.worker_abandon_grace_seconds,
            on_evict=self._evicted if shared else None,
        )
        self._workers.add(worker)
        return worker

    def _evicted(self, engine: WorkerEngine) -> None:
        """A model that killed its shared worker: a worker of its own, started by its next call."""
        self._dedicated_worker().adopt(engine)

    def _forget(self, worker: ModelWorker) -> None:
        worker.close()
        with self._lock:
            self._workers.discard(worker)
            self._shared.pop(worker, None)

    def make_room(self, starting: ModelWorker | None) -> None:
        """Before a worker starts: while `max_workers` run, park the least recently used idle one (its models
        stay loaded; its next call starts it again). Busy workers are not parked: if all are busy, the pool
        runs over its bound for a while rather than fail a call."""
        limit = self._settings.max_workers
        with self._lock:
            running = sorted(
                (w for w in self._workers if w is not starting and w.state is State.READY), key=lambda w: w.last_used
            )
        for worker in running[: max(0, len(running) - limit + 1)]:
            worker.park()

    def close(self, model: LoadedModel) -> None:
        if isinstance(model.engine, WorkerEngine):
            worker = model.engine.worker
            model.engine.close()
            if not worker.models:
                self._forget(worker)

    def usable(self, model: LoadedModel) -> bool:
        """False for a failed worker: loading the version again places it in a working one."""
        return not isinstance(model.engine, WorkerEngine) or model.engine.state is not State.FAILED

    def close_all(self, wait: float = 5.0) -> None:
        """Stop every worker (shutdown) and wait until they are gone, so none outlives the server."""
        with self._lock:
            workers, self._workers = self._workers, set()
            self._shared.clear()
        for worker in workers:
            worker.close()
        for worker in workers:
            worker.close(wait)

    def _spec(self, models: tuple[ModelSpec, ...], prefix: str) -> WorkerSpec:
        # An upload is opened staged and then published beside it: a restart reads the published archive.
        current = tuple(m if Path(m.path).exists() else _published(m) for m in models)
        settings = self._settings
        return WorkerSpec(
            models=current,
            block_prefix=prefix,
            memory_limit_bytes=settings.worker_memory_limit_bytes,
            gpu_memory_fraction=settings.worker_gpu_memory_fraction,
            fused_statistics=settings.fused_statistics,
            kernel_cache_dir=str(settings.kernel_cache_dir) if settings.kernel_cache_dir else None,
            budget=asdict(self._budget),
        )


def _published(model: ModelSpec) -> ModelSpec:
    return ModelSpec(str(Path(model.path).with_name(ARCHIVE)), model.name, model.version)
