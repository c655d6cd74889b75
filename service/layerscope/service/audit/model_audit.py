"""The audit of one model file, in the process that runs it: load it safely, diagnose it, describe it.

Loading is the server's (`open_model`: scan, safe_mode, no compile), diagnosing is the server's
(`model_diagnosis.diagnose`: the rules over one capture, and the training probe with targets), and the entry
is built by `report.described`, which the audit through a server (`cli/audit/remote.py`) uses too. So a
file gives the same findings, layers and error codes wherever it is audited.

TensorFlow is imported only when a model is audited, never when this module is: the parent of the audit
processes imports it without starting TensorFlow.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from layerscope.service.audit import report
from layerscope.service.audit.batch import Training
from layerscope.service.errors import InvalidInput, ServiceError
from layerscope.service.models.formats import legacy_format
from layerscope.service.models.scanner import sha256_of

if TYPE_CHECKING:
    from layerscope.service.diagnosis.diagnoser import Diagnoser
    from layerscope.service.model_diagnosis import Diagnosis
    from layerscope.service.models.registry import LoadedModel


def audit_file(
    path: Path,
    diagnoser: Diagnoser,
    inputs: Mapping[str, np.ndarray] | None = None,
    trusted: bool = False,
    training: Training | None = None,
) -> report.Entry:
    """Audit one file; a file that cannot be audited becomes an entry with an `error`, never an exception.

    `trusted` admits the custom objects a --custom-objects file registered (a local audit's explicit opt-in;
    the server never sets it). The error code is a gRPC status name (`invalid-argument`, `internal`, ...), as
    a `--server` audit of the same file reports it.
    """
    started = time.perf_counter()
    source = str(path)
    other_format = legacy_format(path)
    if other_format:  # a SavedModel folder has no single file to hash
        return report.failed(source, "", InvalidInput.status, other_format, time.perf_counter() - started)
    try:
        sha = sha256_of(path)
    except OSError as exc:
        message = f"Expected a readable .keras file; received {source!r}: {exc}"
        return report.failed(source, "", InvalidInput.status, message, time.perf_counter() - started)
    try:
        model, diagnosis = _load_and_diagnose(path, diagnoser, inputs, trusted, training)
    except ServiceError as exc:
        return report.failed(source, sha, exc.status, exc.message, time.perf_counter() - started)
    except Exception as exc:  # a model that breaks at run time is a finding about that model, not a crash
        message = f"{type(exc).__name__}: {str(exc)[:500]}"
        return report.failed(source, sha, ServiceError.status, message, time.perf_counter() - started)
    from layerscope.service.model_diagnosis import activation_summaries

    activations = activation_summaries(diagnosis.capture)
    seconds = time.perf_counter() - started
    return report.described(source, sha, model.info, activations, diagnosis.findings, seconds, diagnosis.probe)


def _load_and_diagnose(
    path: Path,
    diagnoser: Diagnoser,
    inputs: Mapping[str, np.ndarray] | None,
    trusted: bool,
    training: Training | None,
) -> tuple[LoadedModel, Diagnosis]:
    from layerscope.service.domain.training import TrainingOptions
    from layerscope.service.model_diagnosis import diagnose
    from layerscope.service.models.registry import open_model

    options = TrainingOptions(training.targets, probe_steps=training.probe_steps) if training else None
    with warnings.catch_warnings():
        # Keras warns about some faults it notices while building (a softmax over one unit); the
        # findings report them with layer names and remedies, so the warning would only repeat them.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\.")
        model = open_model(path, path.stem, 1, allow_custom=trusted)
        return model, diagnose(model, diagnoser, inputs, options)
