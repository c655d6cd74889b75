"""The messages between the server and a worker process: small dataclasses, pickled over a socket pair.

server -> worker: `WorkerSpec` once (on the command line, as JSON), then `Call`s, `Load`s and `Unload`s, one
at a time. worker -> server: `Started` (one `Ready` per model of the spec) or `Failed` once it has loaded its
models, then one `Done`, `Ready` or `Failed` per message. Each message crosses as itself on a `wire.Wire`,
its large arrays (a call's inputs, a result's tensors) through shared memory.

A worker holds one model version (a dedicated worker) or several (a shared one): every call names the model
it is for, and a shared worker loads and unloads models while it runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.models import ModelInfo
from layerscope.service.errors import ServiceError

METHODS = frozenset({"predict", "run"})
"""The engine methods a worker runs: a plain forward pass, and `run`, which answers a whole Capture, Diagnose
or sampled Predict (one `CaptureRequest` in, one `CaptureReply` out), so every RPC crosses once."""

ModelKey = tuple[str, int]
"""A model version: (name, version)."""


@dataclass(frozen=True)
class ModelSpec:
    """One model version a worker loads: its archive (already scanned by the server) and its name."""

    path: str
    name: str
    version: int

    @property
    def key(self) -> ModelKey:
        return (self.name, self.version)

    @property
    def title(self) -> str:
        return f"model '{self.name}' version {self.version}"


def describe_models(models: tuple[ModelSpec, ...]) -> str:
    """The models a worker holds, for messages: "model 'a' version 1", or "models 'a':1, 'b':2"."""
    if len(models) == 1:
        return models[0].title
    return "models " + ", ".join(f"'{m.name}':{m.version}" for m in models) if models else "no model"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker loads at start and the limits it sets on itself."""

    models: tuple[ModelSpec, ...]
    block_prefix: str
    """Names of the shared-memory blocks this worker creates start with it, so a dead one's are found."""
    memory_limit_bytes: int | None = None
    """Address space the worker may add past what its models take once loaded (RLIMIT_AS); None: no limit."""
    gpu_memory_fraction: float | None = None
    fused_statistics: bool = True
    kernel_cache_dir: str | None = None
    budget: dict[str, Any] | None = None
    """The server's `ModelBudget`, which the worker's own load applies again (None: the defaults)."""

    @property
    def title(self) -> str:
        return describe_models(self.models)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        fields = json.loads(text)
        fields["models"] = tuple(ModelSpec(**m) for m in fields["models"])
        return cls(**fields)


@dataclass(frozen=True)
class Ready:
    """One model loaded in a worker: what the server publishes of it (the server never holds the model)."""

    info: ModelInfo
    description: ModelDescription
    pid: int
    layer_classes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Started:
    """The worker is up with every model of its spec loaded, in the spec's order."""

    models: tuple[Ready, ...]
    pid: int


@dataclass(frozen=True)
class Call:
    """One engine method of one model, with its arguments."""

    method: str
    model: ModelKey
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Load:
    """Load one more model into a running (shared) worker; answered by `Ready` or `Failed`."""

    model: ModelSpec


@dataclass(frozen=True)
class Unload:
    """Let a model go (answered by an empty `Done`): its memory returns to the worker, mostly to reuse."""

    model: ModelKey


@dataclass(frozen=True)
class Done:
    result: Any
    seconds: float
    """Time the engine took inside the worker: the rest of a call's time is the crossing."""


@dataclass(frozen=True)
class Failed:
    """A call (or a load) that raised. A domain error travels as itself and is raised again in the server,
    so a bad input reads the same with or without workers; anything else travels as text."""

    error: ServiceError | None
    summary: str
    traceback: str = ""
