"""Plain data shared by every part of the service.

Nothing here knows Keras, TensorFlow, gRPC or SQL: the capture engine produces these values, the diagnosis
rules read them, the store persists them and the transport converts them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from layerscope.service.errors import InvalidInput

HISTOGRAM_BINS = 32
"""Every histogram has this many equal-width bins between the finite minimum and maximum."""
HISTOGRAM_SAMPLE = 16_384
"""Above this many values a capture's histogram bins a fixed, deterministic sample of about this size
(`Summary.histogram_sample` says how many), unless the caller asks for exact statistics: binning every
value was the costliest part of a capture, and 16 K values put each bin's share within 1/64 of the whole
tensor's (`histogram_error_bound`)."""
STATISTICS_LEVELS = ("sampled", "exact", "none")
"""What a capture computes: `sampled` (every statistic exact but the histogram above HISTOGRAM_SAMPLE
values), `exact` (the histogram too, at about twice the cost), `none` (no summaries: only the full
tensors asked for)."""
MAX_RUN_ID = 128
"""The longest run id a caller may choose (the width of the stored column)."""


def check_run_id(run_id: str) -> str:
    """A caller's run id, checked before any work is done for it (empty: the server picks one)."""
    if len(run_id) > MAX_RUN_ID or not run_id.isprintable():  # NUL and other controls are not printable
        raise InvalidInput(
            f"Expected a run id of at most {MAX_RUN_ID} printable characters; "
            f"received {len(run_id)} characters: {run_id[:40]!r}."
        )
    return run_id


Shape = tuple[int | None, ...]
JsonValue = Any


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Summary:
    """Statistics of one captured tensor.

    Moments, extremes and the histogram are over the finite values only; the non-finite ones are counted.
    `unit_activity[i]` is the fraction of positions (batch and spatial) where unit/channel `i` (the last
    axis) is > 0; empty for weights.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan: int
    posinf: int
    neginf: int
    histogram: tuple[int, ...]
    histogram_range: tuple[float, float]
    unit_activity: tuple[float, ...] = ()
    histogram_sample: int | None = None
    """How many finite values the histogram binned when it binned a sample; None when it binned all of them.
    Every other field is exact either way."""

    @property
    def estimated(self) -> bool:
        """Whether the histogram (and what is read from it, such as saturated fractions) is an estimate."""
        return self.histogram_sample is not None

    @property
    def non_finite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def rms(self) -> float:
        return float(np.sqrt(self.std**2 + self.mean**2))

    @property
    def dead_unit_fraction(self) -> float:
        """Fraction of units that were never > 0; 0.0 when unit activity was not captured."""
        if not self.unit_activity:
            return 0.0
        return sum(1 for a in self.unit_activity if a <= 0.0) / len(self.unit_activity)


def histogram_error_bound(sample: int) -> float:
    """The stated error of a sampled histogram: each bin's share of the sample (count / sample) lies within
    this of its share of every finite value, for values not arranged in step with the sampling stride.

    Four standard errors of a share estimated from `sample` values (at most 0.5 / sqrt(sample) each);
    tests hold both backends to it on normal, heavy-tailed, constant and non-finite tensors and on NHWC
    tensors whose channels differ.
    """
    return 2.0 / math.sqrt(max(sample, 1))


def summarize(values: np.ndarray, *, per_unit: bool = True) -> Summary:
    """The reference implementation of `Summary` in NumPy.

    The capture engine computes the same numbers on the device; tests compare the two, and code that has
    a tensor on the host (weights at load time, stored tensors) uses this one.
    """
    x = np.asarray(values)
    flat = x.astype(np.float64, copy=False).ravel()
    nan = int(np.isnan(flat).sum())
    posinf = int(np.isposinf(flat).sum())
    neginf = int(np.isneginf(flat).sum())
    finite = flat[np.isfinite(flat)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        mean, std = float(finite.mean()), float(finite.std())
    else:
        lo = hi = mean = std = 0.0
    # A constant tensor gets a bin range of width 1, wider for huge values, where lo + 1.0 == lo.
    top = hi if hi > lo else lo + max(1.0, abs(lo) * 1e-6)
    hist, _ = np.histogram(finite, bins=HISTOGRAM_BINS, range=(lo, top))
    activity: tuple[float, ...] = ()
    if per_unit and x.ndim >= 1 and x.size:
        units = x.reshape(-1, x.shape[-1]).astype(np.float64, copy=False)
        activity = tuple(float(a) for a in (units > 0).mean(axis=0))
    return Summary(
        count=int(flat.size),
        mean=mean,
        std=std,
        min=lo,
        max=hi,
        zero_fraction=float((flat == 0).mean()) if flat.size else 0.0,
        nan=nan,
        posinf=posinf,
        neginf=neginf,
        histogram=tuple(int(c) for c in hist),
        histogram_range=(lo, top),
        unit_activity=activity,
    )


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    layers: tuple[str, ...]
    message: str
    suggestion: str
    evidence: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightInfo:
    """One variable of a layer: `kind` is kernel, bias, or the variable's own name (gamma, moving_mean...)."""

    kind: str
    shape: Shape
    summary: Summary
    identical_units: bool = False
    """True when every output unit (last axis) holds the same weights: symmetry that training never breaks."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the flattened layer graph.

    `name` is the layer's real name, prefixed with its enclosing sub-models (`block/conv`) when nested;
    `inbound` names the layers whose outputs feed it, across sub-model boundaries.
    """

    name: str
    class_name: str
    config: Mapping[str, JsonValue]
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    inbound: tuple[str, ...]
    parameters: int
    weights: tuple[WeightInfo, ...] = ()
    parent: str | None = None

    @property
    def activation(self) -> str | None:
        """The activation this layer applies: its `activation` config, or the ReLU/Softmax layer itself."""
        simple = {
            "ReLU": "relu",
            "Softmax": "softmax",
            "LeakyReLU": "leaky_relu",
            "ELU": "elu",
            "PReLU": "prelu",
        }
        if self.class_name in simple:
            return simple[self.class_name]
        value = self.config.get("activation")
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):  # serialized activation object
            inner = value.get("config", {})
            name = value.get("class_name") if not isinstance(inner, Mapping) else inner.get("name")
            return str(name) if name else None
        return None


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: Shape
    dtype: str


@dataclass(frozen=True)
class ModelDescription:
    """What the diagnosis rules see of a model: its layer graph and compile config, as data."""

    name: str
    layers: tuple[LayerInfo, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    """Names of the layers that produce the model's outputs."""
    parameters: int
    compile_config: Mapping[str, JsonValue] | None = None

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def successors(self, name: str) -> list[LayerInfo]:
        return [layer for layer in self.layers if name in layer.inbound]

    def layer_details(self) -> tuple[LayerDetail, ...]:
        return tuple(
            LayerDetail(x.name, x.class_name, x.output_shapes[0] if x.output_shapes else (), x.parameters)
            for x in self.layers
        )


LayerSummaries = Mapping[str, Mapping[str, Summary]]
"""Captured summaries: layer capture name -> kind (activation, input, kernel, bias, ...) -> Summary."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    """None means the newest loaded version."""


@dataclass(frozen=True)
class LayerDetail:
    """One layer as a caller sees it: real name (nested as `block/conv`), class, first output shape."""

    name: str
    class_name: str
    output_shape: Shape
    parameters: int


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


@dataclass(frozen=True)
class LayerSummaryRecord:
    layer: str
    kind: str
    summary: Summary


@dataclass(frozen=True)
class RunRecord:
    """One capture or diagnosis, as stored: never raw tensors."""

    run_id: str
    model_name: str
    model_version: int
    model_sha256: str
    kind: str
    """"capture" or "diagnose"."""
    created_at: datetime
    batch_size: int
    inputs: str
    """A description of the inputs: caller-given shapes and dtypes, or the probe distributions used."""
    device: str
    duration_seconds: float
    summaries: tuple[LayerSummaryRecord, ...] = ()
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class RunQuery:
    model_name: str | None = None
    model_version: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    finding_code: str | None = None
    limit: int = 20
    page_token: str | None = None


@dataclass(frozen=True)
class RunPage:
    runs: Sequence[RunRecord]
    next_page_token: str | None


def jsonable(value: Any) -> Any:
    """Evidence may hold NumPy scalars, tuples and non-finite floats; JSON and protobuf Struct take none."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class RunStore(Protocol):
    """Where runs are kept: the SQL store, or the spool in front of it."""

    def validate(self, run: RunRecord) -> None:
        """Raise InvalidInput if `save_run` would refuse this run for its content (never for an outage)."""

    def save_run(self, run: RunRecord) -> bool: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(self, query: RunQuery) -> RunPage: ...
