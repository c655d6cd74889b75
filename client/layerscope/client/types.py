"""Result types of the client: frozen dataclasses, never protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class LayerDetail:
    """One layer of a model: real name (nested as `block/conv`), class, first output shape (None: free)."""

    name: str
    class_name: str
    output_shape: tuple[int | None, ...]
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
    device: str = ""
    layer_details: tuple[LayerDetail, ...] = ()
    """The layer graph in order; `layers` names capture points (a layer called twice is two)."""
    transient: bool = False
    """Loaded by `upload_model(..., transient=True)`: in no repository, gone when unloaded."""
    max_batch_size: int = 0
    """The largest batch a call may send this model (its layers' declared sizes times the batch stay within
    the server's call bounds); 0 from a server that does not say."""

    def __repr__(self) -> str:
        """One line, whatever the model's size: layers counted and elided (`layers` and `layer_details` hold all)."""
        inputs = ", ".join(f"{s.name}: {s.dtype} {_shape(s.shape)}" for s in self.inputs)
        flags = ", transient=True" if self.transient else ""
        return (
            f"ModelInfo(name={self.name!r}, version={self.version}, parameters={self.parameters:,}, "
            f"layers={_elided(self.layers)}, inputs=[{inputs}], outputs={_elided(self.outputs)}, "
            f"device={self.device!r}{flags})"
        )


@dataclass(frozen=True)
class Summary:
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
    """How many finite values the histogram binned when it binned a fixed sample (the default for tensors
    above 16,384 values); None when it binned every one. Every other field is exact either way."""

    @property
    def estimated(self) -> bool:
        """Whether the histogram is an estimate from a sample (capture with statistics="exact" to bin all)."""
        return self.histogram_sample is not None


@dataclass(frozen=True)
class Capture:
    run_id: str
    device: str
    batch_size: int
    duration_seconds: float
    outputs: dict[str, np.ndarray]
    summaries: dict[str, dict[str, Summary]] = field(default_factory=dict)
    """layer -> kind (activation, input, kernel, bias, ...) -> Summary."""
    tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """layer -> kind -> the full tensor, for the layers named in `full`."""
    classes: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: the outputs' dtypes and shapes, never their values; summaries and tensors counted."""
        outputs = ", ".join(f"{name!r}: {_array(a)}" for name, a in self.outputs.items())
        kinds = sorted({kind for by_kind in self.summaries.values() for kind in by_kind})
        tensors = ", ".join(f"{layer!r}: {sorted(by_kind)}" for layer, by_kind in self.tensors.items())
        return (
            f"Capture(run_id={self.run_id!r}, device={self.device!r}, batch_size={self.batch_size}, "
            f"duration_seconds={self.duration_seconds:.3g}, outputs={{{outputs}}}, "
            f"summaries={len(self.summaries)} layers x {kinds}, tensors={{{tensors}}})"
        )


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    layers: tuple[str, ...]
    message: str
    suggestion: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeStep:
    """One step of a training probe (on a copy of the weights). Steps 0..N-1 are measured before their update
    (`update_ratios`: that update's |delta w| / |w| per layer); step N is the state after N updates."""

    step: int
    loss: float
    gradient_norms: dict[str, float] = field(default_factory=dict)
    update_ratios: dict[str, float] = field(default_factory=dict)
    dead_fractions: dict[str, float] = field(default_factory=dict)
    saturated_fractions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    steps: tuple[ProbeStep, ...]
    optimizer: str
    loss: str


@dataclass(frozen=True)
class Report:
    run_id: str
    findings: tuple[Finding, ...]
    inputs_used: str
    probe: Probe | None = None
    """The training probe, when the diagnosis had targets and ran one."""

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]


@dataclass(frozen=True)
class Run:
    run_id: str
    model_name: str
    model_version: int
    model_sha256: str
    kind: str
    created_at: datetime
    batch_size: int
    inputs: str
    device: str
    duration_seconds: float
    summaries: dict[str, dict[str, Summary]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    probe: Probe | None = None


@dataclass(frozen=True)
class RunPage:
    runs: tuple[Run, ...]
    next_page_token: str | None


@dataclass(frozen=True)
class LayerChange:
    """From run a to run b (b minus a) for one layer and kind."""

    layer: str
    kind: str
    mean_delta: float
    std_delta: float
    zero_fraction_delta: float
    dead_unit_fraction_delta: float
    histogram_distance: float


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    changes: tuple[LayerChange, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    new_findings: tuple[Finding, ...]
    resolved_findings: tuple[Finding, ...]
    probe: ProbeChange | None = None
    """Set when both runs hold a training probe."""


@dataclass(frozen=True)
class ProbeChange:
    """How two training probes differ (b minus a)."""

    first_loss_delta: float
    last_loss_delta: float
    gradient_norm_deltas: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerWindowHealth:
    """One layer in one monitoring window: its drift against the reference and its health."""

    layer: str
    drift_score: float
    """The drift statistic over its calibrated threshold: >= 1 is drifting; 0 when not judged."""
    drifting: bool
    drift_part: str
    """histogram, activity or scale: the features that moved most."""
    dead_unit_fraction: float | None
    """None where the dead-units rule does not judge the layer."""
    non_finite: int
    activation_rms: float
    mean: float
    std: float
    requests: int


@dataclass(frozen=True)
class MonitorWindow:
    """Sampled traffic of one model version on one replica, judged against the reference when it closed."""

    window_id: str
    replica: str
    started: datetime
    ended: datetime
    requests: int
    reference_id: str
    resolution: str
    first_drifting_layer: str | None
    """The drifting layer nearest the input: where to look first."""
    input_nonfinite: int
    layers: tuple[LayerWindowHealth, ...]

    @property
    def drifting(self) -> tuple[str, ...]:
        return tuple(layer.layer for layer in self.layers if layer.drifting)


@dataclass(frozen=True)
class MonitorReference:
    reference_id: str
    created_at: datetime
    source: str
    """traffic, window:<id> or run:<id>."""
    requests: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class MonitorEvent:
    """Reported at once, not after a window: NaN/Inf in traffic, a layer that died."""

    at: datetime
    kind: str
    layers: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class MonitorStatus:
    """A model version's live-traffic monitoring (`Client.monitor`)."""

    model: str
    version: int
    sample_rate: float
    samples: int
    skipped: dict[str, int]
    nonfinite_samples: int
    reference: MonitorReference | None
    """None while the first sampled requests are still being collected (`reference_progress`)."""
    reference_progress: tuple[int, int]
    windows: tuple[MonitorWindow, ...]
    """Newest first, from every replica."""
    events: tuple[MonitorEvent, ...]
    open_window: MonitorWindow | None


SHOWN_IN_REPR = 3
"""Names a repr shows at each end of a long list before it elides the middle."""


def _elided(names: tuple[str, ...]) -> str:
    """`('a', 'b')`, or past twice SHOWN_IN_REPR names `156 ('input', 'conv1', 'bn1', ..., 'logits')`."""
    if len(names) <= 2 * SHOWN_IN_REPR:
        return repr(names)
    ends = [*map(repr, names[:SHOWN_IN_REPR]), "...", *map(repr, names[-SHOWN_IN_REPR:])]
    return f"{len(names)} ({', '.join(ends)})"


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _array(a: np.ndarray) -> str:
    return f"{a.dtype} {_shape(tuple(a.shape))}"
