"""The models loaded now, by name and version, each with its capture engine and description."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.capture.native import SummaryOpLoader
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.domain.text import quoted
from layerscope.service.errors import NotFound
from layerscope.service.models.budget import ModelBudget
from layerscope.service.models.loader import load_archive
from layerscope.service.models.repository import ModelRepository
from layerscope.service.models.scanner import ScanLimits
from layerscope.service.telemetry import ModelHealth


@dataclass
class LoadedModel:
    info: ModelInfo
    engine: CaptureEngine
    description: ModelDescription
    health: ModelHealth = field(init=False)

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
    archive = load_archive(path, name, limits, trial_timeout, allow_custom, budget)
    engine = CaptureEngine(archive.model, summary_op=summary_op, compile_config=archive.description.compile_config)
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
    )
    return LoadedModel(info, engine, archive.description)


class ModelRegistry:
    def __init__(
        self,
        repository: ModelRepository,
        limits: ScanLimits | None = None,
        trial_timeout: float | None = None,
        summary_op: SummaryOpLoader | None = None,
        budget: ModelBudget | None = None,
    ) -> None:
        self._repository = repository
        self._limits = limits
        self._budget = budget
        self._summary_op = summary_op
        self._trial_timeout = trial_timeout
        self._models: dict[tuple[str, int], LoadedModel] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    def load(self, name: str, version: int | None = None, staged: Path | None = None) -> LoadedModel:
        """Load once: concurrent calls for one version wait for the first instead of loading it again.
        `staged` loads an uploaded archive (of `version`) before it is published."""
        chosen, path = (version, staged) if staged is not None and version else self._repository.locate(name, version)
        key = (name, chosen)
        with self._lock:
            if key in self._models:
                return self._models[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            try:
                loaded = open_model(
                    path,
                    name,
                    chosen,
                    self._limits,
                    self._trial_timeout,
                    summary_op=self._summary_op,
                    budget=self._budget,
                )
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                return self._models.setdefault(key, loaded)

    def get(self, ref: ModelRef) -> LoadedModel:
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
            return self._models.pop((loaded.info.name, loaded.info.version))

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return sorted(self._models.values(), key=lambda m: (m.info.name, m.info.version))
