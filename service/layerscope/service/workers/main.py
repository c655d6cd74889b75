"""The worker process: loads one model version and runs its engine's calls until the server hangs up.

    python -m layerscope.service.workers.main FD SPEC_JSON

FD is this end of a socket pair (messages in `protocol`). The model loads exactly as in the server (scan,
safe_mode, no compile); the fused statistics kernel is loaded as the composition root loads it. The
memory limit is set after loading and one warm-up call, so that TensorFlow's thread pools and the first
trace exist already and the limit bounds what a call adds.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from layerscope.service.errors import ServiceError
from layerscope.service.workers.protocol import METHODS, Call, Done, Failed, Ready, WorkerSpec
from layerscope.service.workers.transport import Inbox, Outbox

log = logging.getLogger("layerscope.worker")
START_FAILED = 3


def main(argv: list[str]) -> int:
    """A worker's life: load the model named by the spec in `argv`, tell the server Ready (or why not, and
    exit START_FAILED), limit its own memory, then answer calls until the server's socket closes."""
    connection = Connection(int(argv[1]))
    spec = WorkerSpec.from_json(argv[2])
    try:
        engine, ready = _start(spec)
    except Exception as exc:  # told to the server, which refuses the load with it
        connection.send(_failure(exc))
        return START_FAILED
    _limit_memory(spec.memory_limit_bytes)
    connection.send(ready)
    _serve(connection, engine, spec.block_prefix)
    return 0


def _start(spec: WorkerSpec) -> tuple[Any, Ready]:
    from layerscope.service.runtime.gpu_share import start_tensorflow_with_gpu_share
    from layerscope.service.runtime.quiet_start import start_tensorflow

    fraction = spec.gpu_memory_fraction
    gpus = start_tensorflow() if fraction is None else start_tensorflow_with_gpu_share(fraction)
    # Only now: these import TensorFlow, whose start-up chatter the calls above keep off stderr.
    from layerscope.service.diagnosis.synthetic_inputs import probe_inputs
    from layerscope.service.domain.call_budget import check_inputs
    from layerscope.service.domain.capture import LIVE_SELECTION, CaptureRequest
    from layerscope.service.models.budget import ModelBudget
    from layerscope.service.models.registry import open_model
    from layerscope.service.runtime.native import SummaryOpLoader

    cache = Path(spec.kernel_cache_dir) if spec.kernel_cache_dir else None
    summary_op = SummaryOpLoader(cache, enabled=spec.fused_statistics)
    if not gpus:  # as the composition root does: built (or found in the cache) before the first capture
        summary_op.load()
    budget = ModelBudget(**spec.budget) if spec.budget else None
    loaded = open_model(Path(spec.path), spec.name, spec.version, summary_op=summary_op, budget=budget)
    try:  # traced before the first call needs them: plain inference, and live monitoring's sampled capture
        probes = probe_inputs(loaded.engine.inputs, batch=3).arrays
        bounds = (budget or ModelBudget()).call_bounds()  # a warm-up asks no more than a caller may
        check_inputs(spec.name, loaded.info.sample_cost, loaded.info.inputs, bounds, probes)
        loaded.engine.predict(probes)
        loaded.engine.warm(CaptureRequest(probes, LIVE_SELECTION))
    except Exception:  # only a warm-up: a model that cannot run on probes still serves its callers' inputs
        log.debug("warm-up of %s:%d failed", spec.name, spec.version, exc_info=True)
    return loaded.engine, Ready(loaded.info, loaded.description, os.getpid(), tuple(loaded.engine.layer_classes))


def _limit_memory(extra: int | None) -> None:
    """RLIMIT_AS: the address space in use now plus `extra`. Past it an allocation fails, and TensorFlow
    usually dies of it (SIGSEGV or SIGABRT): that costs this worker, which the server restarts."""
    if extra is None:
        return
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    limit = pages * os.sysconf("SC_PAGE_SIZE") + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _serve(connection: Connection, engine: Any, prefix: str) -> None:
    inbox, outbox = Inbox(), Outbox(prefix)
    try:
        while True:
            connection.send(_run(engine, connection.recv(), inbox, outbox))
    except (EOFError, OSError):  # the server closed its end: it is gone (it stops a worker with SIGTERM)
        inbox.unlink()
        outbox.close()


def _run(engine: Any, call: Call, inbox: Inbox, outbox: Outbox) -> Done | Failed:
    try:
        if call.method not in METHODS:
            raise ServiceError(f"Expected an engine method among {sorted(METHODS)}; received {call.method!r}.")
        with inbox.opened(call.arguments) as message:
            args, kwargs = message
            del message  # the views into the block must be gone when it closes
            started = time.perf_counter()
            result = getattr(engine, call.method)(*args, **kwargs)
            seconds = time.perf_counter() - started
            del args, kwargs
            packed = outbox.pack(result)
            del result
        return Done(packed, seconds)
    except Exception as exc:  # the server raises it again (a domain error) or reports it (anything else)
        return _failure(exc)


def _failure(exc: Exception) -> Failed:
    if isinstance(exc, ServiceError):
        return Failed(exc, exc.message)
    lines = str(exc).strip().splitlines()
    summary = f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"
    return Failed(None, summary, traceback.format_exc())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
