"""What one audit covers: the model files (folders expanded; `shards` picks one shard of them), the arrays to
run them on, and the error that stops the batch as a whole. Plain data and files: no TensorFlow here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerscope.service.domain.inputs import UNNAMED_INPUT

Arrays = dict[str, np.ndarray] | None
MODEL_TIMEOUT_SECONDS = 900.0
"""How long one model's audit may take before its process is stopped and the model marked unauditable."""


@dataclass(frozen=True)
class Training:
    """`--targets` and `--probe-steps`: what turns on the training rules (plain data: workers get a copy)."""

    targets: dict[str, np.ndarray]
    probe_steps: int | None = None


class AuditAborted(Exception):
    """The whole audit cannot go on (a --custom-objects file that does not import, a worker pool that broke):
    the CLI prints the one-line message and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[AuditAborted], tuple[str]]:
        return type(self), (self.message,)


def model_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to every *.keras below them; sorted, without duplicates.

    A TensorFlow SavedModel folder stays one entry, so its report says what it is and how to convert it.
    """
    found: set[Path] = set()
    for path in paths:
        if path.is_dir() and not (path / "saved_model.pb").is_file():
            found.update(p for p in path.rglob("*.keras") if p.is_file())
        else:
            found.add(path)
    return sorted(found)


def load_inputs(path: Path | None) -> Arrays:
    """A .npy array (unnamed: the model's one input, or output, by position) or a .npz of arrays by name."""
    if path is None:
        return None
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return {UNNAMED_INPUT.format(0): loaded}
    return {name: loaded[name] for name in loaded.files}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
