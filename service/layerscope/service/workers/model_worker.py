"""A worker process seen from the server, the model versions it holds, and the watch over it.

A `ModelWorker` runs one process holding one model version (a dedicated worker) or several (a shared one).
Each model it holds is reached through a `WorkerEngine`, which has the methods and facts of `CaptureEngine`
that the application uses, so the Inspector and the diagnosis do not know which one they hold. Arguments
cross to the worker as they were given, so every engine parameter reaches the real engine unchanged.

One call runs at a time per process (TensorFlow already spreads one call over the cores). A watcher thread
waits on the process: when it dies, calls in flight fail with ModelUnavailable naming the model and the
cause, calls that arrive meanwhile wait for the restart, and the restart (with every model the worker still
holds) follows a `RestartPolicy`; when that gives up, its models are failed and answer ModelUnavailable
until they are loaded again. In a shared worker, the model whose call or load killed the process is moved
out before the restart (`on_evict`), so one model that crashes cannot keep taking its neighbours down.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import numpy as np

from layerscope.service import cancellation
from layerscope.service.domain.capture import CaptureReply, CaptureRequest
from layerscope.service.errors import Cancelled, DeadlineExceeded, InvalidInput, LimitExceeded, ModelUnavailable
from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import (
    CallAbandoned,
    CallTimedOut,
    Cause,
    WorkerCallFailed,
    WorkerDied,
    WorkerProcess,
    describe_exit,
)
from layerscope.service.workers.protocol import ModelKey, ModelSpec, Ready, Started, describe_models

log = logging.getLogger(__name__)

Starter = Callable[[tuple[ModelSpec, ...]], tuple[WorkerProcess, Started]]
"""Starts a process holding these models (the pool's: it knows the settings and where archives live)."""
RSS_EVERY_SECONDS = 1.0


class WorkerObserver(Protocol):
    """Told of restarts, resident memory (None: the worker is gone) and each call's crossing time."""

    def restarted(self, model: str, cause: str) -> None: ...
    def resident(self, model: str, version: int, size: int | None) -> None: ...
    def crossed(self, model: str, seconds: float) -> None: ...


class State(enum.Enum):
    READY = "ready"
    RESTARTING = "restarting"
    PARKED = "parked"
    """No process: stopped on purpose to make room for other workers, or not started yet; the next call or
    load starts it."""
    FAILED = "failed"
    CLOSED = "closed"


class _Moved(Exception):
    """The model left this worker (evicted) while its call waited: the call goes to its new worker."""


class WorkerEngine:
    """One model version held by a worker: the engine interface the application calls."""

    def __init__(self, worker: ModelWorker, spec: ModelSpec, ready: Ready) -> None:
        info = ready.info
        self.spec = spec
        self.ready = ready
        self.name, self.version = info.name, info.version
        self.inputs = info.inputs
        self.device = info.device
        self.output_names = list(info.outputs)
        self.output_specs = info.output_specs
        self.layer_classes = list(ready.layer_classes)
        self.worker = worker
        """Its worker: a shared worker hands a model that crashed it to a worker of its own (`rehome`)."""

    def predict(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        result: dict[str, np.ndarray] = self._call("predict", args, kwargs)
        return result

    def warm(self, request: CaptureRequest) -> None:
        """Only a running worker is warmed: a parked or restarting one warms itself as it starts."""
        if self.worker.state is State.READY:
            self.run(request)

    def run(self, request: CaptureRequest) -> CaptureReply:
        result: CaptureReply = self._call("run", (request,), {})
        return result

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        while True:
            worker = self.worker
            try:
                return worker.call(self.spec, method, args, kwargs)
            except _Moved:
                if self.worker is worker:  # evicted, and not (yet) adopted: nowhere to run
                    title = _title(self.spec)
                    raise ModelUnavailable(f"{title} is unavailable: its worker is being replaced.") from None

    @property
    def state(self) -> State:
        return self.worker.state

    @property
    def pid(self) -> int:
        """The process running this model now (tests kill it; operators find it in `ps`)."""
        return self.worker.pid

    def close(self) -> None:
        """This model leaves its worker (unload); the last one to leave stops the process."""
        self.worker.remove(self.spec.key)


class ModelWorker:
    def __init__(
        self,
        start: Starter,
        policy: RestartPolicy,
        call_timeout: float,
        start_timeout: float,
        observer: WorkerObserver,
        make_room: Callable[[ModelWorker], None] = lambda worker: None,
        abandon_grace: float | None = None,
        on_evict: Callable[[WorkerEngine], None] | None = None,
    ) -> None:
        """A worker without a process yet (PARKED): `add` starts it. `abandon_grace`: how long it may go on
        with a call that has ended (cancelled, past its deadline) before it is stopped and restarted; None:
        it runs on to `call_timeout`. `on_evict`: given the model whose call or load killed this worker while
        it held others; None keeps the model (a dedicated worker)."""
        self._process: WorkerProcess | None = None
        self._start = start
        self._policy = policy
        self._call_timeout = call_timeout
        self._start_timeout = start_timeout
        self._observer = observer
        self._abandon_grace = abandon_grace
        self._on_evict = on_evict
        self._engines: dict[ModelKey, WorkerEngine] = {}
        self._evicted: set[ModelKey] = set()
        self._state = State.PARKED
        self._last_cause: Cause | None = None
        self._kill_cause: Cause | None = None
        """Set just before the server kills the worker itself (a call past its deadline)."""
        self._cond = threading.Condition()
        self._calls = threading.Lock()
        self._next_rss = 0.0
        self._make_room = make_room
        self._watcher: threading.Thread | None = None
        self.last_used = time.monotonic()
        """When a call last began: the pool parks the least recently used worker first."""

    # -- what it holds ---------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def pid(self) -> int:
        """The current process's id; 0 when it has none (parked, not started)."""
        process = self._process
        return process.pid if process is not None and self._state is not State.PARKED else 0

    @property
    def models(self) -> tuple[ModelKey, ...]:
        with self._cond:
            return tuple(self._engines)

    def add(self, spec: ModelSpec) -> WorkerEngine:
        """Load `spec` into this worker (starting its process if it has none) and return its engine. Raises
        what refused the load; a load that kills the process is refused as InvalidInput, and the worker
        restarts with the models it held before."""
        with self._calls:
            self.last_used = time.monotonic()
            process, ready = self._ready(_title(spec), adding=spec)
            try:
                ready = ready or process.load(spec, self._start_timeout)
            except WorkerDied as died:
                self._mark_down(process)
                cause = died.cause.text
                raise InvalidInput(f"Expected a loadable archive for {spec.title}; loading it, {cause}.") from None
            except LimitExceeded:
                self._kill(process, Cause("load", f"loading {spec.title} took longer than {self._start_timeout:g} s"))
                raise
            engine = WorkerEngine(self, spec, ready)
            with self._cond:
                self._engines[spec.key] = engine
                self._evicted.discard(spec.key)
        self._report_resident(process)
        return engine

    def adopt(self, engine: WorkerEngine) -> None:
        """Hold a model that was loaded elsewhere (an evicted one): its next call starts this worker."""
        with self._cond:
            self._engines[engine.spec.key] = engine
            engine.worker = self

    def remove(self, key: ModelKey) -> None:
        """Let one model go (unload): its calls end with ModelUnavailable from now on. The last one to leave
        stops the process for good (CLOSED), at once, even during a call; otherwise the worker drops the
        model once its current call is done."""
        with self._cond:
            engine = self._engines.pop(key, None)
            last = not self._engines
        if engine is not None:
            self._observer.resident(engine.name, engine.version, None)
        if last:
            self.close()
        else:
            threading.Thread(target=self._unload, args=(key,), name="layerscope-worker-unload", daemon=True).start()

    def _unload(self, key: ModelKey) -> None:
        with self._calls:
            with self._cond:
                process = self._process if self._state is State.READY else None
            if process is not None:  # a stopped worker starts again without it
                with suppress(WorkerDied, CallTimedOut, WorkerCallFailed):
                    process.unload(key, self._call_timeout)

    def park(self) -> bool:
        """Stop the process to free its memory, keeping its models loaded: the next call starts a new one
        (a cold start). False, and nothing done, while a call runs or when the worker is not ready."""
        if not self._calls.acquire(blocking=False):
            return False
        try:
            with self._cond:
                if self._state is not State.READY or self._process is None:
                    return False
                self._state = State.PARKED
                process = self._process
            process.stop()
            self._report_resident(None)
            log.info("worker of %s parked to make room for other models", self._title())
            return True
        finally:
            self._calls.release()

    def close(self, wait: float = 0.0) -> None:
        """Stop the worker for good (unload, shutdown). Waits up to `wait` seconds until its process is
        reaped and its shared memory removed (at shutdown); an unload returns at once."""
        with self._cond:
            stopping = self._state not in (State.CLOSED, State.PARKED) and self._process is not None
            self._state = State.CLOSED
            self._cond.notify_all()
            process, watcher = self._process, self._watcher
        if stopping and process is not None:
            process.stop()
            self._report_resident(None)
        if wait and watcher is not None:
            watcher.join(wait)

    # -- calls -----------------------------------------------------------------------------------------------

    def call(self, spec: ModelSpec, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        title = _title(spec)
        with self._calls:
            self.last_used = time.monotonic()
            process, _ = self._ready(title, spec.key)
            cancellation.check()  # its caller left while it waited for the worker: it never starts
            started = time.perf_counter()
            ended = cancellation.current() if self._abandon_grace is not None else None
            grace = self._abandon_grace or 0.0
            try:
                value, seconds = process.call(spec.key, method, args, kwargs, self._call_timeout, ended, grace)
            except CallAbandoned:
                text = f"its call ended (cancelled or past its deadline) and it ran on for {grace:g} s"
                self._kill(process, Cause("abandoned", text, counts=False))
                raise Cancelled(
                    f"Expected {title} to stop when its call ended; it ran on for {grace:g} s "
                    "(worker_abandon_grace_seconds), so its worker was stopped and is being restarted."
                ) from None
            except CallTimedOut:
                self._kill(process, Cause("deadline", f"a call ran past the {self._call_timeout:g} s deadline"))
                self._evict(spec.key)
                raise DeadlineExceeded(
                    f"Expected {title} to answer within {self._call_timeout:g} s (worker_call_timeout_seconds); "
                    "it did not, so its worker was stopped and is being restarted."
                ) from None
            except WorkerDied as died:
                self._mark_down(process)
                self._evict(spec.key)
                raise self._died_during_call(title, died.cause) from None
        now = time.perf_counter()
        self._observer.crossed(spec.name, max(0.0, now - started - seconds))
        if now >= self._next_rss:  # /proc costs as much as a small call's crossing: once a second is plenty
            self._next_rss = now + RSS_EVERY_SECONDS
            self._report_resident(process)
        return value

    def _ready(
        self, title: str, key: ModelKey | None = None, adding: ModelSpec | None = None
    ) -> tuple[WorkerProcess, Ready | None]:
        """The live process; waits while it restarts. ModelUnavailable when failed, unloaded or too slow. A
        worker without a process starts one, holding `adding` too (then its Ready comes back as well), so a
        worker's command line names the model it was started for."""
        with self._cond:
            restarted = self._cond.wait_for(lambda: self._state is not State.RESTARTING, self._start_timeout)
            if not restarted:
                raise ModelUnavailable(
                    f"{title} is unavailable: its worker is restarting after {self._describe_last()}. "
                    "Retry in a few seconds."
                )
            if self._state is State.FAILED:
                raise ModelUnavailable(self._failed_message(title))
            if key is not None and key in self._evicted:
                raise _Moved()
            if self._state is State.CLOSED or (key is not None and key not in self._engines):
                raise ModelUnavailable(f"{title} is unavailable: it was unloaded.")
            if self._state is not State.PARKED and self._process is not None:
                return self._process, None
        return self._resume(title, adding)

    def _resume(self, title: str, adding: ModelSpec | None = None) -> tuple[WorkerProcess, Ready | None]:
        """Start the process of a worker without one (the caller holds the call lock): parked, or new."""
        self._make_room(self)
        try:
            process, started = self._start(self._specs() + ((adding,) if adding else ()))
        except Exception as exc:
            if adding is not None:  # a load: refused as the load in the server would be
                raise
            raise ModelUnavailable(
                f"{title} is unavailable: its worker could not start: {getattr(exc, 'message', exc)}"
            ) from exc
        with self._cond:
            if self._state is not State.PARKED:  # closed meanwhile
                process.stop()
                raise ModelUnavailable(f"{title} is unavailable: it was unloaded.")
            self._process = process
            self._state = State.READY
            self._cond.notify_all()
        self._report_resident(process)
        self._watcher = self._watch_process()
        log.info("worker of %s started (pid %d)", self._title(), process.pid)
        return process, started.models[-1] if adding else None

    def _evict(self, key: ModelKey) -> None:
        """A shared worker's model that killed it leaves before the restart, for a worker of its own."""
        with self._cond:
            if self._on_evict is None or len(self._engines) < 2:
                return
            engine = self._engines.pop(key)
            self._evicted.add(key)
        log.warning("%s killed its shared worker: it gets a worker of its own", _title(engine.spec))
        self._on_evict(engine)

    def _died_during_call(self, title: str, cause: Cause) -> ModelUnavailable:
        if self._state is State.CLOSED:
            return ModelUnavailable(f"{title} is unavailable: it was unloaded during the call.")
        return ModelUnavailable(
            f"{title} is unavailable: its worker process died during the call; {cause.text}. "
            "The worker is being restarted; retry in a few seconds."
        )

    def _kill(self, process: WorkerProcess, cause: Cause) -> None:
        with self._cond:
            self._kill_cause = cause
        process.kill()
        self._mark_down(process)

    def _mark_down(self, process: WorkerProcess) -> None:
        """The next call waits for the restart rather than meet the dead process before the watcher does."""
        with self._cond:
            if self._state is State.READY and self._process is process:
                self._state = State.RESTARTING

    # -- the watcher -----------------------------------------------------------------------------------------

    def _watch_process(self) -> threading.Thread:
        watcher = threading.Thread(target=self._watch, name=f"layerscope-worker-{self.pid}", daemon=True)
        watcher.start()
        return watcher

    def _watch(self) -> None:
        process: WorkerProcess | None = self._process
        while process is not None:
            code = process.wait()
            with self._cond:
                if self._state in (State.CLOSED, State.PARKED) or self._process is not process:
                    return  # stopped on purpose (and maybe started again since); `wait` removed its blocks
                cause = self._kill_cause or describe_exit(code, process.spec.memory_limit_bytes)
                self._kill_cause = None
            process = self._restart(cause)

    def _restart(self, cause: Cause) -> WorkerProcess | None:
        """Start a new process after a backoff; None when closed meanwhile or when the policy gives up. The
        models it holds are read after the backoff, so a model evicted by the call that died is left out."""
        while True:
            backoff = self._policy.crashed() if cause.counts else self._policy.first_backoff
            with self._cond:
                self._last_cause = cause
                if self._state is State.CLOSED:
                    return None
                if backoff is None:
                    self._state = State.FAILED
                    self._cond.notify_all()
                    log.error("%s", self._failed_message(self._title()))
                    self._report_resident(None)
                    return None
                self._state = State.RESTARTING
                log.warning("worker of %s stopped: %s; restarting in %.1f s", self._title(), cause.text, backoff)
                for engine in self._engines.values():
                    self._observer.restarted(engine.name, cause.label)
                if self._cond.wait_for(lambda: self._state is State.CLOSED, backoff):
                    return None
                if not self._engines:  # its only model was evicted, or failed to load: start it when needed
                    self._state = State.PARKED
                    self._cond.notify_all()
                    return None
            try:
                process, _ = self._start(self._specs())
            except Exception as exc:  # counted as a crash: models that cannot start again end failed too
                cause = Cause("start", f"its restart failed: {getattr(exc, 'message', exc)}")
                continue
            with self._cond:
                if self._state is State.CLOSED:
                    process.stop()
                    return None
                self._process = process
                self._state = State.READY
                self._cond.notify_all()
            self._report_resident(process)
            log.info("worker of %s is back (pid %d)", self._title(), process.pid)
            return process

    # -- helpers ---------------------------------------------------------------------------------------------

    def _specs(self) -> tuple[ModelSpec, ...]:
        with self._cond:
            return tuple(engine.spec for engine in self._engines.values())

    def _report_resident(self, process: WorkerProcess | None) -> None:
        """Every model of a shared worker reports the process's size (a dashboard takes the max per model)."""
        size = process.resident_bytes() if process is not None else None
        with self._cond:
            engines = list(self._engines.values())
        for engine in engines:
            self._observer.resident(engine.name, engine.version, size)

    def _title(self) -> str:
        return describe_models(self._specs())

    def _describe_last(self) -> str:
        return self._last_cause.text if self._last_cause else "a crash"

    def _failed_message(self, title: str) -> str:
        return (
            f"{title} is failed: its worker stopped {self._policy.max_crashes} times within "
            f"{self._policy.window_seconds:g} s (last: {self._describe_last()}). It is not restarted until "
            "the model is loaded again (LoadModel)."
        )


def _title(spec: ModelSpec) -> str:
    return f"Model '{spec.name}' version {spec.version}"
