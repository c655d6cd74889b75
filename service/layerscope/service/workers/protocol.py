"""The messages between the server and a model worker: small dataclasses, pickled over a socket pair.

server -> worker: `WorkerSpec` once (on the command line, as JSON), then `Call`s, one at a time.
worker -> server: `Ready` or `Failed` once it has loaded the model, then one `Done` or `Failed` per call.
Arrays inside a call's arguments or result travel in `transport.Packed`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.models import ModelInfo
from layerscope.service.errors import ServiceError
from layerscope.service.workers.transport import Packed

METHODS = frozenset({"predict", "run"})
"""The engine methods a worker runs: a plain forward pass, and `run`, which answers a whole Capture, Diagnose
or sampled Predict (one `CaptureRequest` in, one `CaptureReply` out), so every RPC crosses once."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker loads and the limits it sets on itself."""

    path: str
    name: str
    version: int
    block_prefix: str
    """Names of the shared-memory blocks this worker creates start with it, so a dead one's are found."""
    memory_limit_bytes: int | None = None
    """Address space the worker may add once its model is loaded (RLIMIT_AS); None: no limit."""
    gpu_memory_fraction: float | None = None
    fused_statistics: bool = True
    kernel_cache_dir: str | None = None
    budget: dict[str, Any] | None = None
    """The server's `ModelBudget`, which the worker's own load applies again (None: the defaults)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Ready:
    info: ModelInfo
    description: ModelDescription
    pid: int
    layer_classes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Call:
    method: str
    arguments: Packed
    """(args, kwargs) of the engine method."""


@dataclass(frozen=True)
class Done:
    result: Packed
    seconds: float
    """Time the engine took inside the worker: the rest of a call's time is the crossing."""


@dataclass(frozen=True)
class Failed:
    """A call (or the start) that raised. A domain error travels as itself and is raised again in the server,
    so a bad input reads the same with or without workers; anything else travels as text."""

    error: ServiceError | None
    summary: str
    traceback: str = ""
