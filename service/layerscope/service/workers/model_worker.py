"""The engine of a model version whose calls run in a worker process, and the watch over that process.

`ModelWorker` has the methods and facts of `CaptureEngine` that the application uses, so the Inspector and
the diagnosis do not know which one they hold. Its arguments cross to the worker as they were given, so
every engine parameter (the statistics level, and any added later) reaches the real engine unchanged.

One call runs at a time per worker (TensorFlow already spreads one call over the cores). A watcher thread
waits on the process: when it dies, calls in flight fail with ModelUnavailable naming the model and the
cause, calls that arrive meanwhile wait for the restart, and the restart follows a `RestartPolicy`; when
that gives up the model is failed and answers ModelUnavailable until it is loaded again.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from layerscope.service import cancellation
from layerscope.service.domain.capture import CaptureReply, CaptureRequest
from layerscope.service.errors import Cancelled, DeadlineExceeded, ModelUnavailable
from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import (
    CallAbandoned,
    CallTimedOut,
    Cause,
    WorkerDied,
    WorkerProcess,
    describe_exit,
)
from layerscope.service.workers.protocol import Ready

log = logging.getLogger(__name__)

Starter = Callable[[], tuple[WorkerProcess, Ready]]
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
    """Stopped on purpose to make room for other models' workers; the next call starts it again."""
    FAILED = "failed"
    CLOSED = "closed"


class ModelWorker:
    def __init__(
        self,
        process: WorkerProcess,
        ready: Ready,
        start: Starter,
        policy: RestartPolicy,
        call_timeout: float,
        start_timeout: float,
        observer: WorkerObserver,
        make_room: Callable[[ModelWorker], None] = lambda worker: None,
        abandon_grace: float | None = None,
    ) -> None:
        """`abandon_grace`: how long the worker may go on with a call that has ended (cancelled, past its
        deadline) before it is stopped and restarted; None: it runs on to `call_timeout`."""
        info = ready.info
        self.name, self.version = info.name, info.version
        self.inputs = info.inputs
        self.device = info.device
        self.output_names = list(info.outputs)
        self.output_specs = info.output_specs
        self.layer_classes = list(ready.layer_classes)
        self._process = process
        self._start = start
        self._policy = policy
        self._call_timeout = call_timeout
        self._start_timeout = start_timeout
        self._observer = observer
        self._abandon_grace = abandon_grace
        self._state = State.READY
        self._last_cause: Cause | None = None
        self._kill_cause: Cause | None = None
        """Set just before the server kills the worker itself (a call past its deadline)."""
        self._cond = threading.Condition()
        self._calls = threading.Lock()
        self._title = f"Model '{self.name}' version {self.version}"
        self._next_rss = 0.0
        self._make_room = make_room
        self.last_used = time.monotonic()
        """When a call last began: the pool parks the least recently used worker first."""
        observer.resident(self.name, self.version, process.resident_bytes())
        self._watcher = self._watch_process()

    # -- the engine's interface ------------------------------------------------------------------------------

    def predict(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        result: dict[str, np.ndarray] = self._call("predict", args, kwargs)
        return result

    def warm(self, request: CaptureRequest) -> None:
        """Only a running worker is warmed: a parked or restarting one warms itself as it starts."""
        if self._state is State.READY:
            self.run(request)

    def run(self, request: CaptureRequest) -> CaptureReply:
        result: CaptureReply = self._call("run", (request,), {})
        return result

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def pid(self) -> int:
        """The current worker's process id (tests kill it; operators find it in `ps`)."""
        return self._process.pid

    def park(self) -> bool:
        """Stop the worker to free its memory, keeping the model loaded: its next call starts a new one (a cold
        start). False, and nothing done, while a call runs or when the worker is not ready."""
        if not self._calls.acquire(blocking=False):
            return False
        try:
            with self._cond:
                if self._state is not State.READY:
                    return False
                self._state = State.PARKED
                process = self._process
            process.stop()
            self._observer.resident(self.name, self.version, None)
            log.info("worker of %s parked to make room for other models", self._title)
            return True
        finally:
            self._calls.release()

    def close(self, wait: float = 0.0) -> None:
        """Stop the worker for good (unload, shutdown). Waits up to `wait` seconds until its process is
        reaped and its shared memory removed (at shutdown); an unload returns at once."""
        with self._cond:
            stopping = self._state is not State.CLOSED
            self._state = State.CLOSED
            self._cond.notify_all()
            process = self._process
        if stopping:
            process.stop()
            self._observer.resident(self.name, self.version, None)
        if wait:
            self._watcher.join(wait)

    # -- calls -----------------------------------------------------------------------------------------------

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._calls:
            self.last_used = time.monotonic()
            process = self._ready()
            cancellation.check()  # its caller left while it waited for the worker: it never starts
            started = time.perf_counter()
            ended = cancellation.current() if self._abandon_grace is not None else None
            grace = self._abandon_grace or 0.0
            try:
                value, seconds = process.call(method, args, kwargs, self._call_timeout, ended, grace)
            except CallAbandoned:
                text = f"its call ended (cancelled or past its deadline) and it ran on for {grace:g} s"
                self._kill(process, Cause("abandoned", text, counts=False))
                raise Cancelled(
                    f"Expected {self._title} to stop when its call ended; it ran on for {grace:g} s "
                    "(worker_abandon_grace_seconds), so its worker was stopped and is being restarted."
                ) from None
            except CallTimedOut:
                self._kill(process, Cause("deadline", f"a call ran past the {self._call_timeout:g} s deadline"))
                raise DeadlineExceeded(
                    f"Expected {self._title} to answer within {self._call_timeout:g} s (worker_call_timeout_seconds); "
                    "it did not, so its worker was stopped and is being restarted."
                ) from None
            except WorkerDied as died:
                self._mark_down(process)
                raise self._died_during_call(died.cause) from None
        now = time.perf_counter()
        self._observer.crossed(self.name, max(0.0, now - started - seconds))
        if now >= self._next_rss:  # /proc costs as much as a small call's crossing: once a second is plenty
            self._next_rss = now + RSS_EVERY_SECONDS
            self._observer.resident(self.name, self.version, process.resident_bytes())
        return value

    def _ready(self) -> WorkerProcess:
        """The live worker; waits while it restarts. ModelUnavailable when failed, unloaded or too slow."""
        with self._cond:
            restarted = self._cond.wait_for(lambda: self._state is not State.RESTARTING, self._start_timeout)
            if not restarted:
                raise ModelUnavailable(
                    f"{self._title} is unavailable: its worker is restarting after {self._describe_last()}. "
                    "Retry in a few seconds."
                )
            if self._state is State.FAILED:
                raise ModelUnavailable(self._failed_message())
            if self._state is State.CLOSED:
                raise ModelUnavailable(f"{self._title} is unavailable: it was unloaded.")
            if self._state is not State.PARKED:
                return self._process
        return self._resume()

    def _resume(self) -> WorkerProcess:
        """A parked worker's first call starts its process again (the caller holds the call lock)."""
        self._make_room(self)
        try:
            process, _ = self._start()
        except Exception as exc:
            raise ModelUnavailable(
                f"{self._title} is unavailable: its parked worker could not start again: {getattr(exc, 'message', exc)}"
            ) from exc
        with self._cond:
            if self._state is not State.PARKED:  # unloaded meanwhile
                process.stop()
                raise ModelUnavailable(f"{self._title} is unavailable: it was unloaded.")
            self._process = process
            self._state = State.READY
            self._cond.notify_all()
        self._observer.resident(self.name, self.version, process.resident_bytes())
        self._watcher = self._watch_process()
        log.info("worker of %s started again (pid %d)", self._title, process.pid)
        return process

    def _died_during_call(self, cause: Cause) -> ModelUnavailable:
        if self._state is State.CLOSED:
            return ModelUnavailable(f"{self._title} is unavailable: it was unloaded during the call.")
        return ModelUnavailable(
            f"{self._title} is unavailable: its worker process died during the call; {cause.text}. "
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
        watcher = threading.Thread(target=self._watch, name=f"layerscope-worker-{self.name}", daemon=True)
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
        """Start a new worker after a backoff; None when closed meanwhile or when the policy gives up."""
        while True:
            backoff = self._policy.crashed() if cause.counts else self._policy.first_backoff
            with self._cond:
                self._last_cause = cause
                if self._state is State.CLOSED:
                    return None
                if backoff is None:
                    self._state = State.FAILED
                    self._cond.notify_all()
                    log.error("%s", self._failed_message())
                    self._observer.resident(self.name, self.version, None)
                    return None
                self._state = State.RESTARTING
                log.warning("worker of %s stopped: %s; restarting in %.1f s", self._title, cause.text, backoff)
                self._observer.restarted(self.name, cause.label)
                if self._cond.wait_for(lambda: self._state is State.CLOSED, backoff):
                    return None
            try:
                process, _ = self._start()
            except Exception as exc:  # counted as a crash: a model that cannot start again ends failed too
                cause = Cause("start", f"its restart failed: {getattr(exc, 'message', exc)}")
                continue
            with self._cond:
                if self._state is State.CLOSED:
                    process.stop()
                    return None
                self._process = process
                self._state = State.READY
                self._cond.notify_all()
            self._observer.resident(self.name, self.version, process.resident_bytes())
            log.info("worker of %s:%d is back (pid %d)", self.name, self.version, process.pid)
            return process

    def _describe_last(self) -> str:
        return self._last_cause.text if self._last_cause else "a crash"

    def _failed_message(self) -> str:
        return (
            f"{self._title} is failed: its worker stopped {self._policy.max_crashes} times within "
            f"{self._policy.window_seconds:g} s (last: {self._describe_last()}). It is not restarted until "
            "the model is loaded again (LoadModel)."
        )
