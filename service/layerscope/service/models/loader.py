"""Safe loading: scan the archive as data, then let Keras load it with safe_mode and without compiling.

The compile config is never executed: it is read from the archive's config.json by the scanner and handed
to the diagnosis rules as plain JSON.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from layerscope.service.domain.description import ModelDescription
from layerscope.service.errors import InvalidInput, UnsafeModel
from layerscope.service.models.budget import Declared, ModelBudget, check_budget
from layerscope.service.models.describe import describe
from layerscope.service.models.isolation import trial_load
from layerscope.service.models.scanner import ScanLimits, scan_archive

log = logging.getLogger(__name__)

_SCOPE_NAME = re.compile(r"^[A-Za-z0-9_.\\/>-]*$")
"""TensorFlow's pattern for a name scope, as its error message quotes it (a root scope may not begin with `_`
either; the model's name is held to the looser one, so nothing that runs today is refused)."""


@dataclass(frozen=True)
class LoadedArchive:
    model: keras.Model
    description: ModelDescription
    sha256: str
    compile_config: dict[str, Any] | None
    declared: Declared | None = None
    """What the config declares, measured before loading (None: not measured, `allow_custom`)."""


def load_archive(
    path: Path,
    name: str,
    limits: ScanLimits | None = None,
    trial_timeout: float | None = None,
    allow_custom: bool = False,
    budget: ModelBudget | None = None,
) -> LoadedArchive:
    """Scan, bound what the config declares, optionally load once in a child process, then load; refusals
    say what was expected and found."""
    report = scan_archive(path, limits or ScanLimits(), allow_custom=allow_custom)
    declared = None
    if not allow_custom:  # a local audit of trusted code may declare what it likes
        declared = check_budget(report.config, budget or ModelBudget())
    if trial_timeout is not None:
        trial_load(path, trial_timeout)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except UnsafeModel:
        raise
    except Exception as exc:  # Keras raises many types for a broken archive; the caller needs one
        log.info("Keras could not load %s: %s", path, exc)
        raise InvalidInput(
            f"Expected a loadable Keras 3 archive for model '{name}'; Keras refused it: {_first_line(exc)}"
        ) from exc
    if not isinstance(model, keras.Model):
        raise InvalidInput(f"Expected a keras.Model in the archive; received {type(model).__name__}.")
    _check_scope_names(model, name)
    compile_config = report.compile_config
    description = describe(model, compile_config, name=name)
    return LoadedArchive(model, description, report.sha256, compile_config, declared)


def _check_scope_names(model: keras.Model, name: str) -> None:
    """Refuse a model TensorFlow cannot run: Keras opens a name scope per layer call (the model's own too), and
    TensorFlow refuses a scope name outside `_SCOPE_NAME` (a non-ASCII letter, a space), so every call of such a
    model failed as an internal error. Keras loads it all the same, so it is checked here."""
    called = [layer for layer in _flatten(model) if not isinstance(layer, keras.layers.InputLayer)]  # inputs: any
    for layer in (model, *called):
        if not _SCOPE_NAME.match(layer.name):
            raise InvalidInput(
                f"Expected layer names TensorFlow accepts (matching {_SCOPE_NAME.pattern}) in model '{name}'; "
                f"received {type(layer).__name__} {layer.name[:80]!r}, which no call could run. Rename it (its "
                "`name`) and save the model again."
            )


def _flatten(model: keras.Model) -> list[keras.Layer]:
    """Every layer inside, nested models' and wrappers' too (Bidirectional's inner layers take their names
    from the config)."""
    flatten = getattr(model, "_flatten_layers", None)  # Keras 3's own walk; not public, so guarded
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    return list(model.layers)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]
