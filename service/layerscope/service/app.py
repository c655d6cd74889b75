"""The composition root: the one place where the parts of the service are built and wired together."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.domain.models import ModelInfo
from layerscope.service.domain.runs import RunRecord
from layerscope.service.errors import StartupError
from layerscope.service.grpc.server import Health, Running, start_server
from layerscope.service.inspector import Inspector
from layerscope.service.metrics_http import start_metrics_server
from layerscope.service.models.budget import ModelBudget
from layerscope.service.models.lifecycle import ModelLifecycle
from layerscope.service.models.metrics import LoadMetrics
from layerscope.service.models.registry import ModelRegistry
from layerscope.service.models.repository import ModelRepository
from layerscope.service.monitoring.model_monitor import MonitorConfig
from layerscope.service.monitoring.monitor import Monitor, Rates
from layerscope.service.monitoring.sampling import Budget
from layerscope.service.monitoring.window import Window
from layerscope.service.ports import check_free
from layerscope.service.runtime.native import SummaryOpLoader
from layerscope.service.runtime.quiet_start import start_tensorflow
from layerscope.service.settings import Settings
from layerscope.service.store.engine import create_engine, encoding_warning, server_encoding
from layerscope.service.store.migrations import migrate
from layerscope.service.store.monitor_store import WINDOWS, SpoolingMonitorStore, SqlMonitorStore
from layerscope.service.store.run_writer import RunWriter
from layerscope.service.store.spool import Spool
from layerscope.service.store.sql_store import SqlRunStore
from layerscope.service.telemetry import ModelHealthCollector, ModelLoadCollector, MonitorCollector, Telemetry
from layerscope.service.workers.metrics import WorkerMetrics
from layerscope.service.workers.pool import WorkerPool

log = logging.getLogger("layerscope")
PRUNE_EVERY_SECONDS = 3600.0
ROLL_UP_AFTER = timedelta(days=1)
SHUTDOWN_SLACK_SECONDS = 30.0


@dataclass
class App:
    settings: Settings
    inspector: Inspector
    telemetry: Telemetry
    running: Running
    metrics_port: int
    _close_metrics: Callable[[], None]
    _dispose: Callable[[], None]
    _flush: Callable[[], int]
    _replayer: asyncio.Task[None]
    _loading: asyncio.Task[list[ModelInfo]]
    _poller: asyncio.Task[None] | None = None
    _workers: WorkerPool | None = None

    @property
    def port(self) -> int:
        return self.running.port

    async def models_loaded(self) -> list[ModelInfo]:
        """Wait until every model found in the repository at start has loaded or failed (health's
        `layerscope.models` says SERVING then); returns those loaded."""
        return await asyncio.shield(self._loading)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish, then try once more to empty the spool."""
        self.inspector.stop_loading()  # models found at start and not loading yet are let go
        await self.running.stop(self.settings.grace_seconds if grace is None else grace)
        await asyncio.wait([self._loading])  # loads under way end first, so no worker starts after close_all
        self._replayer.cancel()
        if self._poller is not None:
            self._poller.cancel()
        if self._workers is not None:  # waits (seconds at most) until no worker outlives the server
            await asyncio.to_thread(self._workers.close_all)
        await asyncio.to_thread(self.inspector.discard_transient)  # audits' models leave no file behind
        remaining = await asyncio.to_thread(self._flush)
        if remaining:
            log.warning("%d runs stay in the spool at %s for the next start", remaining, self.settings.spool_dir)
        self._close_metrics()
        self._dispose()


async def start(settings: Settings, registry: CollectorRegistry | None = None) -> App:
    """Build every part, migrate the database, start gRPC and /metrics; returns once the server answers calls
    (health SERVING), while the repository's models load in the background (`App.models_loaded`)."""
    began = time.monotonic()
    registry = registry or CollectorRegistry()
    # A taken port is refused before the slow start (TensorFlow, the database); the binds below decide.
    check_free("gRPC", settings.host, settings.port, "--port", "LAYERSCOPE_PORT")
    metrics_host = settings.metrics_host or settings.host
    check_free("metrics", metrics_host, settings.metrics_port, "--metrics-port", "LAYERSCOPE_METRICS_PORT")
    gpus = start_tensorflow()
    log.info("devices: %s", ", ".join(gpus) or "CPU only")
    telemetry = Telemetry(registry)
    engine, encoding = await asyncio.to_thread(_database, settings.database_url)
    trial = settings.load_timeout_seconds if settings.isolated_loading else None
    summary_op = SummaryOpLoader(settings.kernel_cache_dir, enabled=settings.fused_statistics)
    if not gpus:  # built (or found) now, so the first capture does not wait for the compiler
        await asyncio.to_thread(summary_op.load)
        log.info("capture statistics: fused kernel %s", summary_op.reason)
    repository = ModelRepository(settings.model_repository)
    budget = ModelBudget(
        settings.max_model_layers,
        settings.max_model_parameters,
        settings.max_layer_output_elements,
        settings.max_total_output_elements,
        settings.max_input_elements,
        settings.max_batch_size,
        settings.max_call_layer_bytes,
        settings.max_call_total_bytes,
        settings.max_probe_bytes,
        settings.probe_idle_seconds,
    )
    # With workers on, models run in worker processes (shared by small ones), which also replace the trial load.
    workers = None
    if settings.model_workers:
        workers = WorkerPool(settings, WorkerMetrics(telemetry), budget=budget)
        # A call on a worker holds a thread while it waits on a socket, also through a restart; the default
        # pool (cores + 4 threads) would let one crashed model's waiting callers stall every other call.
        threads = settings.max_concurrent_rpcs + 8
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads, "layerscope-call"))
    registry_of_models = ModelRegistry(
        repository, trial_timeout=trial, summary_op=summary_op, budget=budget, opener=workers
    )
    health = Health()
    models = ModelLifecycle(
        repository,
        registry_of_models,
        LoadMetrics(telemetry),
        settings.transient_model_seconds,
        readiness=health,
        load_concurrency=load_concurrency(settings),
    )
    spool: Spool[RunRecord] = Spool(settings.spool_dir, settings.spool_max_runs)
    runs = SqlRunStore(engine, encoding=encoding)
    store = RunWriter(
        runs,
        spool,
        telemetry.spool_depth.set,
        settings.spool_replay_seconds,
        telemetry.db_write_seconds.observe,
        settings.run_write_delay_seconds,
    )
    monitor, windows = _monitor(settings, engine, telemetry)
    inspector = Inspector(settings, models, store, Diagnoser(), telemetry, monitor)
    registry.register(ModelHealthCollector(inspector.model_health, settings.max_layer_series))
    registry.register(MonitorCollector(inspector.monitor_snapshots, settings.max_layer_series))
    registry.register(ModelLoadCollector(inspector.load_times))
    metrics_server, metrics_thread = start_metrics_server(settings.metrics_port, metrics_host, registry=registry)

    def close_metrics() -> None:
        metrics_server.shutdown()
        metrics_server.server_close()
        metrics_thread.join(timeout=5)

    try:
        running = await start_server(settings, inspector, telemetry, health)
    except StartupError:
        close_metrics()
        engine.dispose()
        raise
    # SERVING once the server can answer: the models found now load behind it, each with its own health
    # status (`layerscope.model.<name>`), and a call for one still loading is answered UNAVAILABLE (retry).
    found = await inspector.scan_repository() if settings.load_at_start else []
    await running.serving()
    serving = _since_start(began)
    telemetry.start_seconds.labels("serving").set(serving)
    log.info(
        "SERVING %.1fs after the process started; loading %d models, %d at once",
        serving,
        len(found),
        load_concurrency(settings),
    )
    loading = asyncio.create_task(_load_at_start(inspector, found, health, telemetry, began))

    def flush() -> int:
        if monitor is not None:  # open windows closed and stored (or spooled) before the runs' last replay
            monitor.stop()
        return store.stop()

    store.start()
    if monitor is not None:
        monitor.start()
    replayer = asyncio.create_task(_maintain(runs, windows, settings, inspector))
    poller = None
    if settings.repository_poll_seconds:
        poller = asyncio.create_task(_poll_repository(inspector, settings.repository_poll_seconds))
    return App(
        settings,
        inspector,
        telemetry,
        running,
        metrics_server.server_port,
        close_metrics,
        engine.dispose,
        flush,
        replayer,
        loading,
        poller,
        workers,
    )


async def _load_at_start(
    inspector: Inspector, found: list[tuple[str, int]], health: Health, telemetry: Telemetry, began: float
) -> list[ModelInfo]:
    """Load the models the start-up scan found, then say `layerscope.models` SERVING whatever came of it: a
    broken archive must not keep a replica from being ready with the rest."""
    loaded: list[ModelInfo] = []
    try:
        loaded = await inspector.load_found(found)
    except Exception:  # each model's failure is handled where it loads; this would be a bug, not a bad model
        log.exception("loading the repository's models at start failed")
    await health.models_loaded()
    ready = _since_start(began)
    telemetry.start_seconds.labels("models").set(ready)
    log.info(
        "loaded at start: %s (%d of %d); all models ready %.1fs after the process started",
        _versions(loaded) or "no models",
        len(loaded),
        len(found),
        ready,
    )
    return loaded


def load_concurrency(settings: Settings) -> int:
    """Models loaded at once: the setting, else the CPUs this process may use (a load is CPU work: a worker
    importing TensorFlow, Keras rebuilding a model); with model workers, no more than may run at once."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    chosen = settings.load_concurrency or cpus
    return min(chosen, settings.max_workers) if settings.model_workers else chosen


def _since_start(began: float) -> float:
    """Seconds since this process started (Linux: /proc/self/stat), the wait an operator of `layerscope serve`
    sees, TensorFlow's import included; elsewhere, since `began`."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - began


def _database(url: str) -> tuple[Any, str]:
    """The run database's engine, migrated, and its encoding (a SQL_ASCII database, whose length limits count
    bytes, is warned about in one line, with the fix)."""
    engine = create_engine(url)
    migrate(engine)
    encoding = server_encoding(engine)
    if (warning := encoding_warning(encoding, url)) is not None:
        log.warning("%s", warning)
    return engine, encoding


async def _poll_repository(inspector: Inspector, every: float) -> None:
    """Load what appeared in the repository (another replica's upload on a shared volume, a copied file)."""
    while True:
        await asyncio.sleep(every)
        try:
            loaded = await inspector.load_repository()
        except Exception:  # the folder may be briefly unreadable (a volume remount); try again next time
            log.exception("polling the model repository failed")
            continue
        if loaded:
            log.info("loaded from the repository: %s", _versions(loaded))


def _versions(models: list[ModelInfo]) -> str:
    return ", ".join(f"{m.name}:{m.version}" for m in models)


def _monitor(
    settings: Settings, engine: Any, telemetry: Telemetry
) -> tuple[Monitor | None, SpoolingMonitorStore | None]:
    """Live-traffic monitoring, unless every sample rate is 0; windows spool beside the runs."""
    if not settings.monitor_sample_rate and not any(settings.monitor_sample_rates.values()):
        return None, None
    spool: Spool[Window] = Spool(settings.spool_dir / "windows", settings.spool_max_runs, WINDOWS)
    windows = SpoolingMonitorStore(SqlMonitorStore(engine), spool, telemetry.window_spool_depth.set)
    config = MonitorConfig(
        window_seconds=settings.monitor_window_seconds,
        reference_requests=settings.monitor_reference_requests,
        false_alarms_per_week=settings.monitor_false_alarms_per_week,
        replica=settings.replica,
    )
    rates = Rates(settings.monitor_sample_rate, dict(settings.monitor_sample_rates))
    busy = max(2, settings.max_queue_per_model // 2)  # half the model's queue: a backlog is forming
    return Monitor(config, rates, Budget(settings.monitor_cpu_budget), windows, busy_queue=busy), windows


async def _maintain(
    runs: SqlRunStore, windows: SpoolingMonitorStore | None, settings: Settings, inspector: Inspector
) -> None:
    """Background upkeep: retry spooled windows (without waiting for new traffic; the run writer retries runs
    itself), roll windows up into hours past a day, prune old runs and windows, unload transient models no one
    uses any more."""
    next_prune = 0.0
    while True:
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            await _prune(runs, windows, settings)
        await asyncio.sleep(settings.spool_replay_seconds)
        try:
            await inspector.expire_transient()
        except Exception:  # never stop the upkeep; the next round tries again
            log.exception("unloading idle transient models failed")
        if windows is not None:
            try:
                await asyncio.to_thread(windows.replay)
            except Exception:  # a replay failure must never stop future replays
                log.exception("window spool replay failed")


async def _prune(runs: SqlRunStore, windows: SpoolingMonitorStore | None, settings: Settings) -> None:
    now = datetime.now(UTC)
    try:
        if windows is not None:
            merged = await asyncio.to_thread(windows.roll_up, now - ROLL_UP_AFTER)
            if merged:
                log.info("rolled %d monitoring windows up into hours", merged)
        if settings.retention_days:
            cutoff = now - timedelta(days=settings.retention_days)
            pruned = await asyncio.to_thread(runs.prune, cutoff)
            if windows is not None:
                pruned += await asyncio.to_thread(windows.prune, cutoff)
            if pruned:
                log.info("pruned %d runs and windows older than %s", pruned, cutoff)
    except Exception:  # the database may be down; the spools cover writes, upkeep can wait
        log.warning("rolling up or pruning failed; will retry", exc_info=True)


async def serve(settings: Settings, announce: Callable[[App], Any] = lambda app: None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully: refuse new calls, finish in-flight ones."""
    app = await start(settings)
    announce(app)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down: %.1fs grace for in-flight calls", settings.grace_seconds)
    _exit_if_stuck(settings.grace_seconds + SHUTDOWN_SLACK_SECONDS)
    await app.stop()


def _exit_if_stuck(deadline: float) -> None:
    """A last resort: if shutting down outlives the grace by SHUTDOWN_SLACK_SECONDS, write every thread's
    stack to stderr (to find out what held it) and exit with status 1, rather than wait for a SIGKILL.
    By then the spool is flushed or its runs are on disk for the next start."""

    def watch() -> None:
        time.sleep(deadline)
        log.error("shutdown did not finish within %.0fs; thread stacks follow, then exit 1", deadline)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    threading.Thread(target=watch, name="layerscope-shutdown-watchdog", daemon=True).start()
