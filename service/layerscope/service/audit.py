"""Local audits: open a model file safely, diagnose it, and describe the result as the audit JSON document.

The JSON shape is a fixed contract (`layerscope.audit/v1`: schema, models[source, sha256, parameters, error,
findings, layers]); the CLI and `--server` audits produce the same document.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.domain import Finding, ModelDescription, Severity, Summary, jsonable
from layerscope.service.errors import InvalidInput, ServiceError
from layerscope.service.inspection import activation_summaries, diagnose
from layerscope.service.models.formats import legacy_format
from layerscope.service.models.registry import open_model
from layerscope.service.models.scanner import sha256_of

SCHEMA = "layerscope.audit/v1"


@dataclass(frozen=True)
class ModelAudit:
    source: str
    sha256: str
    parameters: int = 0
    error: dict[str, str] | None = None
    findings: tuple[Finding, ...] = ()
    layers: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0
    inputs_used: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


def audit_file(
    path: Path, diagnoser: Diagnoser, inputs: Mapping[str, np.ndarray] | None = None, trusted: bool = False
) -> ModelAudit:
    """Audit one file; a file that cannot be audited becomes an `error` entry, never an exception.

    The entry's error code is a gRPC status name (`invalid-argument`, `internal`, ...), as a `--server`
    audit of the same file reports it.
    """
    started = time.perf_counter()
    source = str(path)

    def failed(sha: str, code: str, message: str) -> ModelAudit:
        error = {"code": code, "message": message}
        return ModelAudit(source, sha, error=error, seconds=time.perf_counter() - started)

    other_format = legacy_format(path)
    if other_format:  # a SavedModel folder has no single file to hash
        return failed("", InvalidInput.status, other_format)
    try:
        sha = sha256_of(path)
    except OSError as exc:
        return failed("", InvalidInput.status, f"Expected a readable .keras file; received {source!r}: {exc}")
    try:
        with warnings.catch_warnings():
            # Keras warns about some faults it notices while building (a softmax over one unit); the
            # findings report them with layer names and remedies, so the warning would only repeat them.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\.")
            model = open_model(path, path.stem, 1, allow_custom=trusted)
            diagnosis = diagnose(model, diagnoser, inputs)
    except ServiceError as exc:
        return failed(sha, exc.status, exc.message)
    except Exception as exc:  # a model that breaks at run time is a finding about that model, not a crash
        return failed(sha, ServiceError.status, f"{type(exc).__name__}: {str(exc)[:500]}")
    return ModelAudit(
        source=source,
        sha256=sha,
        parameters=model.description.parameters,
        findings=tuple(diagnosis.findings),
        layers=layer_rows(model.description, activation_summaries(diagnosis.capture)),
        seconds=time.perf_counter() - started,
        inputs_used=diagnosis.inputs_used,
    )


def layer_rows(description: ModelDescription, activations: Mapping[str, Summary]) -> tuple[dict[str, Any], ...]:
    rows = []
    for layer in description.layers:
        summary = activations.get(layer.name)
        shape = layer.output_shapes[0] if layer.output_shapes else ()
        rows.append(
            {
                "name": layer.name,
                "class": layer.class_name,
                "output_shape": list(shape),
                "activation": None if summary is None else activation_stats(summary),
            }
        )
    return tuple(rows)


def activation_stats(s: Summary) -> dict[str, Any]:
    return {
        "mean": s.mean,
        "std": s.std,
        "min": s.min,
        "max": s.max,
        "zero_fraction": s.zero_fraction,
        "nan": s.nan,
        "inf": s.posinf + s.neginf,
    }


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": f.severity.value,
        "layers": list(f.layers),
        "message": f.message,
        "suggestion": f.suggestion,
        "evidence": jsonable(f.evidence),
    }


def model_entry(a: ModelAudit) -> dict[str, Any]:
    """One model of the audit document (plain JSON data, so worker processes can hand it back)."""
    return {
        "source": a.source,
        "sha256": a.sha256,
        "parameters": a.parameters,
        "error": a.error,
        "findings": [finding_json(f) for f in a.findings],
        "layers": list(a.layers),
        "seconds": round(a.seconds, 3),
    }


def document(audits: Sequence[ModelAudit]) -> dict[str, Any]:
    return {"schema": SCHEMA, "models": [model_entry(a) for a in audits]}
