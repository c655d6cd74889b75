"""A loaded model as callers name it (`ModelRef`) and see it (`ModelInfo`)."""

from __future__ import annotations

from dataclasses import dataclass

from layerscope.service.domain.call_budget import SampleCost
from layerscope.service.domain.description import InputSpec, LayerDetail
from layerscope.service.errors import InvalidInput

MAX_VERSION = 2**31 - 1
"""The largest model version every layer holds: the proto carries int64, but the run store's column is a
32-bit integer, and a version it cannot store would make every later listing of runs fail."""


def check_version(version: int) -> int:
    if not 0 < version <= MAX_VERSION:
        raise InvalidInput(f"Expected a model version from 1 to {MAX_VERSION}; received {version}.")
    return version


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    """None means the newest loaded version."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    sha256: str
    parameters: int
    layers: tuple[str, ...]
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[str, ...] = ()
    device: str = "CPU"
    output_specs: tuple[InputSpec, ...] = ()
    """Name, dtype and shape of each output, in the order of `outputs`."""
    layer_details: tuple[LayerDetail, ...] = ()
    """The layer graph in order; `layers` names capture points (a layer called twice is two)."""
    transient: bool = False
    """Loaded from a transient upload (an audit through the server): in no repository, its runs are audit runs,
    and no metric or live monitoring counts it."""
    sample_cost: SampleCost | None = None
    """What one sample declares (bytes by dtype), measured before loading; None when it was not measured (a
    local audit of trusted code)."""
    max_batch_size: int = 0
    """The largest batch a call may send this model (`call_budget`); 0: not bounded beyond the server's."""
