"""The models loaded now, by name and version, each with its capture engine and description."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.domain.capture import CaptureReply, CaptureRequest
from layerscope.service.domain.description import InputSpec, ModelDescription
from layerscope.service.domain.model_health import ModelHealth
from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.domain.text import quoted
from layerscope.service.errors import NotFound
from layerscope.service.models.budget import ModelBudget
from layerscope.service.models.loader import load_archive
from layerscope.service.models.repository import ModelRepository
from layerscope.service.models.scanner import ScanLimits
from layerscope.service.runtime.native import SummaryOpLoader


class Engine(Protocol):
    """What the application uses of an engine: `CaptureEngine` in this process, or a model worker's."""

    device: str
    inputs: tuple[InputSpec, ...]
    output_names: list[str]
    output_specs: tuple[InputSpec, ...]

    @property
    def layer_classes(self) -> list[tuple[str, str]]: ...
    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def warm(self, request: CaptureRequest) -> None:
        """Trace what `request` needs ahead of the first call that needs it; never starts anything (a worker
        not running now warms itself when it starts)."""
        ...

    def run(self, request: CaptureRequest) -> CaptureReply:
        """Everything one Capture, Diagnose or sampled Predict needs, in one call (one crossing with workers):
        the full-tensor budget checked before the model runs, the capture, the diagnosis evidence and the
        training probe asked for."""
        ...


@dataclass
class LoadedModel:
    info: ModelInfo
    engine: Engine
    description: ModelDescription
    health: ModelHealth = field(init=False)
    load_seconds: float | None = field(default=None, init=False)
    """How long opening it took (scan, load, and with workers the worker's start), set by the registry."""

    def __post_init__(self) -> None:
        self.health = ModelHealth(self.info.name, self.info.version)


def open_model(
    path: Path,
    name: str,
    version: int,
    limits: ScanLimits | None = None,
    trial_timeout: float | None = None,
    allow_custom: bool = False,
    summary_op: SummaryOpLoader | None = None,
    budget: ModelBudget | None = None,
) -> LoadedModel:
    """Load one archive into a ready engine: shared by the server and local audits."""
    budget = budget or ModelBudget()
    archive = load_archive(path, name, limits, trial_timeout, allow_custom, budget)
    engine = CaptureEngine(
        archive.model,
        summary_op=summary_op,
        compile_config=archive.description.compile_config,
        max_probe_bytes=budget.max_probe_bytes,
        probe_idle_seconds=budget.probe_idle_seconds,
    )
    cost = archive.declared.cost() if archive.declared else None
    info = ModelInfo(
        name=name,
        version=version,
        sha256=archive.sha256,
        parameters=archive.description.parameters,
        layers=tuple(p for p, _ in engine.layers),
        inputs=engine.inputs,
        outputs=tuple(engine.output_names),
        device=engine.device,
        output_specs=engine.output_specs,
        layer_details=archive.description.layer_details(),
        sample_cost=cost,
        max_batch_size=budget.call_bounds().largest_batch(cost),
    )
    return LoadedModel(info, engine, archive.description)


class ModelOpener(Protocol):
    """How the registry opens a model version and lets it go: in this process, or in a worker process."""

    def open(self, path: Path, name: str, version: int) -> LoadedModel: ...
    def close(self, model: LoadedModel) -> None: ...
    def usable(self, model: LoadedModel) -> bool:
        """False when the version must be opened again on its next load (its worker failed)."""
        ...


class InProcess:
    """Models run in the server process: the default, and what tests and single-model use need."""

    def __init__(
        self,
        limits: ScanLimits | None = None,
        trial_timeout: float | None = None,
        summary_op: SummaryOpLoader | None = None,
        budget: ModelBudget | None = None,
    ) -> None:
        self._limits = limits
        self._trial_timeout = trial_timeout
        self._summary_op = summary_op
        self._budget = budget

    def open(self, path: Path, name: str, version: int) -> LoadedModel:
        return open_model(
            path, name, version, self._limits, self._trial_timeout, summary_op=self._summary_op, budget=self._budget
        )

    def close(self, model: LoadedModel) -> None:
        pass  # the engine goes with its last reference

    def usable(self, model: LoadedModel) -> bool:
        return True


class ModelRegistry:
    def __init__(
        self,
        repository: ModelRepository,
        limits: ScanLimits | None = None,
        trial_timeout: float | None = None,
        summary_op: SummaryOpLoader | None = None,
        budget: ModelBudget | None = None,
        opener: ModelOpener | None = None,
    ) -> None:
        self._repository = repository
        self._opener = opener or InProcess(limits, trial_timeout, summary_op, budget)
        self._models: dict[tuple[str, int], LoadedModel] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    def load(self, name: str, version: int | None = None, staged: Path | None = None) -> LoadedModel:
        """Load once: concurrent calls for one version wait for the first instead of loading it again.
        `staged` loads an uploaded archive (of `version`) before it is published."""
        chosen, path = (version, staged) if staged is not None and version else self._repository.locate(name, version)
        key = (name, chosen)
        with self._lock:
            if self._is_usable(key):
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if self._is_usable(key):
                    return self._models[key]
            began = time.perf_counter()
            try:
                loaded = self._opener.open(path, name, chosen)
                loaded.load_seconds = time.perf_counter() - began
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                stale = self._models.get(key)
                self._models[key] = loaded
            if stale is not None:  # a failed worker, replaced by the new one
                self._opener.close(stale)
            return loaded

    def _is_usable(self, key: tuple[str, int]) -> bool:
        return key in self._models and self._opener.usable(self._models[key])

    def get(self, ref: ModelRef) -> LoadedModel:
        """The loaded version asked for, or the newest loaded one when `ref` names none; NotFound names what
        is loaded instead."""
        with self._lock:
            versions = sorted(v for n, v in self._models if n == ref.name)
            if not versions:
                raise NotFound(
                    f"Expected a loaded model named {quoted(ref.name)}; received a name that is not loaded "
                    f"(loaded: {sorted({n for n, _ in self._models}) or 'none'})."
                )
            version = versions[-1] if ref.version is None else ref.version
            if version not in versions:
                raise NotFound(
                    f"Model '{ref.name}' is loaded at versions {versions}; received a request for version {version}."
                )
            return self._models[(ref.name, version)]

    def unload(self, ref: ModelRef) -> LoadedModel:
        loaded = self.get(ref)
        with self._lock:
            removed = self._models.pop((loaded.info.name, loaded.info.version))
        self._opener.close(removed)
        return removed

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return sorted(self._models.values(), key=lambda m: (m.info.name, m.info.version))
