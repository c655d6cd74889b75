"""The worker process: loads its model versions and runs their engines' calls until the server hangs up.

    python -m layerscope.service.workers.main FD SPEC_JSON

FD is this end of a socket pair (messages in `protocol`). Models load exactly as in the server (scan,
safe_mode, no compile); the fused statistics kernel is loaded once per process, as the composition root
loads it. The memory limit is set after the models are loaded and warmed up, so that TensorFlow's thread
pools and first traces exist already and the limit bounds what a call adds; a shared worker lifts it while
it loads another model and sets it again after.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from layerscope.service.errors import LimitExceeded, ServiceError
from layerscope.service.workers.protocol import (
    METHODS,
    Call,
    Done,
    Failed,
    Load,
    ModelKey,
    ModelSpec,
    Ready,
    Started,
    Unload,
    WorkerSpec,
)
from layerscope.service.workers.transport import Inbox, Outbox
from layerscope.service.workers.wire import Wire

log = logging.getLogger("layerscope.worker")
START_FAILED = 3


class _Models:
    """The engines this worker holds, by model version, and how it loads one more."""

    def __init__(self, spec: WorkerSpec) -> None:
        from layerscope.service.runtime.gpu_share import start_tensorflow_with_gpu_share
        from layerscope.service.runtime.quiet_start import start_tensorflow

        fraction = spec.gpu_memory_fraction
        gpus = start_tensorflow() if fraction is None else start_tensorflow_with_gpu_share(fraction)
        # Only now: these import TensorFlow, whose start-up chatter the calls above keep off stderr.
        from layerscope.service.models.budget import ModelBudget
        from layerscope.service.runtime.native import SummaryOpLoader

        cache = Path(spec.kernel_cache_dir) if spec.kernel_cache_dir else None
        self._summary_op = SummaryOpLoader(cache, enabled=spec.fused_statistics)
        if not gpus:  # as the composition root does: built (or found in the cache) before the first capture
            self._summary_op.load()
        self._budget = ModelBudget(**spec.budget) if spec.budget else ModelBudget()
        self.memory_limit = spec.memory_limit_bytes
        self.engines: dict[ModelKey, Any] = {}

    def load(self, model: ModelSpec) -> Ready:
        from layerscope.service.models.registry import open_model

        _limit_memory(None)  # a model's own size is bounded by the budget, not by the limit on calls
        try:
            path = Path(model.path)
            loaded = open_model(path, model.name, model.version, summary_op=self._summary_op, budget=self._budget)
            self._warm(model, loaded)
            self.engines[model.key] = loaded.engine
        finally:
            _limit_memory(self.memory_limit)
        return Ready(loaded.info, loaded.description, os.getpid(), tuple(loaded.engine.layer_classes))

    def _warm(self, model: ModelSpec, loaded: Any) -> None:
        """Traced before the first call needs them: plain inference, and live monitoring's sampled capture."""
        from layerscope.service.diagnosis.synthetic_inputs import probe_inputs
        from layerscope.service.domain.call_budget import check_inputs
        from layerscope.service.domain.capture import LIVE_SELECTION, CaptureRequest

        try:
            probes = probe_inputs(loaded.engine.inputs, batch=3).arrays
            bounds = self._budget.call_bounds()  # a warm-up asks no more than a caller may
            check_inputs(model.name, loaded.info.sample_cost, loaded.info.inputs, bounds, probes)
            loaded.engine.predict(probes)
            loaded.engine.warm(CaptureRequest(probes, LIVE_SELECTION))
        except Exception:  # only a warm-up: a model that cannot run on probes still serves its callers' inputs
            log.debug("warm-up of %s failed", model.title, exc_info=True)


def main(argv: list[str]) -> int:
    """A worker's life: load the models named by the spec in `argv`, tell the server Started (or why not,
    and exit START_FAILED), then answer messages until the server's socket closes."""
    spec = WorkerSpec.from_json(argv[2])
    wire = Wire(socket.socket(fileno=int(argv[1])), Outbox(spec.block_prefix), Inbox())
    try:
        models = _Models(spec)
        readies = tuple(models.load(model) for model in spec.models)
    except Exception as exc:  # told to the server, which refuses the load with it
        wire.send(_failure(exc))
        return START_FAILED
    wire.send(Started(readies, os.getpid()))
    _serve(wire, models)
    return 0


def _limit_memory(extra: int | None) -> None:
    """RLIMIT_AS (soft): the address space in use now plus `extra`; None lifts it. Past it an allocation
    fails, and TensorFlow usually dies of it (SIGSEGV or SIGABRT): that costs this worker, which the server
    restarts. The hard limit stays, so the worker can lift its own limit to load another model."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if extra is None:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def _serve(wire: Wire, models: _Models) -> None:
    try:
        while True:
            with wire.opened() as message:  # a call's inputs view the server's block while the engine runs
                answer = _answer(models, message)
                del message  # the views must be gone before the next message may replace the block
            wire.write(_framed(wire, answer, models.memory_limit))
            del answer
    except (EOFError, OSError):  # the server closed its end: it is gone (it stops a worker with SIGTERM)
        wire.discard()


def _framed(wire: Wire, answer: Done | Ready | Failed, memory_limit: int | None) -> bytes:
    """The answer as a frame; an answer that cannot cross (a result that does not pickle, no room for a
    block in /dev/shm) is the call's failure instead, as when the engine raised: the worker serves on."""
    try:
        return wire.frame(answer)
    except Exception as exc:
        return wire.frame(_failure(_out_of_memory(exc, memory_limit) or exc))


def _answer(models: _Models, message: Call | Load | Unload) -> Done | Ready | Failed:
    try:
        if isinstance(message, Load):
            return models.load(message.model)
        if isinstance(message, Unload):
            models.engines.pop(message.model, None)
            return Done(None, 0.0)
        return _run(models.engines, message)
    except Exception as exc:  # the server raises it again (a domain error) or reports it (anything else)
        return _failure(_out_of_memory(exc, models.memory_limit) or exc)


def _run(engines: dict[ModelKey, Any], call: Call) -> Done:
    if call.method not in METHODS:
        raise ServiceError(f"Expected an engine method among {sorted(METHODS)}; received {call.method!r}.")
    engine = engines.get(call.model)
    if engine is None:
        raise ServiceError(f"Expected a call for a model this worker holds ({sorted(engines)}); received {call.model}.")
    started = time.perf_counter()
    result = getattr(engine, call.method)(*call.args, **call.kwargs)
    return Done(result, time.perf_counter() - started)


def _out_of_memory(exc: Exception, limit: int | None) -> LimitExceeded | None:
    """TensorFlow's own out-of-memory error (an allocation refused, often by the worker's limit, which it
    survived): the caller asked for more than the worker may hold, RESOURCE_EXHAUSTED rather than a fault."""
    if type(exc).__name__ != "ResourceExhaustedError":
        return None
    lines = [line for line in str(exc).splitlines() if "OOM" in line] or str(exc).strip().splitlines()
    where = f"its worker's memory limit of {limit / 2**20:.0f} MiB" if limit else "the worker's memory"
    return LimitExceeded(
        f"Expected the call to fit in {where} (worker_memory_limit_bytes; a smaller batch needs less); "
        f"received a call TensorFlow could not allocate for: {lines[0][:300] if lines else 'out of memory'}."
    )


def _failure(exc: Exception) -> Failed:
    if isinstance(exc, ServiceError):
        return Failed(exc, exc.message)
    lines = str(exc).strip().splitlines()
    summary = f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"
    return Failed(None, summary, traceback.format_exc())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
