"""One engine call per RPC: what a Capture, a Diagnose or a sampled Predict asks of a model's engine, and
everything it gets back.

With model workers every engine call is a crossing between processes, so the use cases say all they need in
one `CaptureRequest` (inputs, selection, statistics, targets, loss, the full-tensor budget, whether the
diagnosis evidence and a training probe are wanted) and get one `CaptureReply`; the engine prepares the
inputs once and checks sizes itself, before the model runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import LossSpec, ProbeResult, TargetInfo
from layerscope.service.errors import LimitExceeded


@dataclass
class CaptureResult:
    """A forward pass with capture: the model's outputs, summaries of what was selected, full tensors asked for."""

    outputs: dict[str, np.ndarray]
    summaries: dict[str, dict[str, Summary]] = field(default_factory=dict)
    """capture point -> kind -> Summary."""
    tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """capture point -> kind -> full tensor, only for the layers asked for."""
    classes: dict[str, str] = field(default_factory=dict)
    batch_size: int = 0
    frozen: dict[str, np.ndarray] = field(default_factory=dict)
    """capture point -> counts of its activation's finite values on the request's frozen edges: [below the
    first edge, each bin, at or above the last edge, zeros among them] (a fixed sample of large tensors)."""


@dataclass(frozen=True)
class ProbeOptions:
    """A training probe: `steps` optimizer steps on a copy of the weights (0: none)."""

    steps: int
    optimizer: str | None = None
    learning_rate: float | None = None


@dataclass(frozen=True)
class CaptureRequest:
    inputs: Mapping[str, np.ndarray]
    selection: Selection
    statistics: str = "sampled"
    targets: Mapping[str, np.ndarray] | None = None
    loss: str | None = None
    max_full_bytes: int | None = None
    """Refuse (LimitExceeded) before the model runs when the full tensors, by their traced shapes, and
    `output_bytes` exceed this; None: no check."""
    output_bytes: int = 0
    """The model's outputs' bytes, which count against the same budget."""
    evidence: bool = False
    """Also the statistics of the prepared inputs and, with targets, of the targets and the loss used: what the
    diagnosis rules read besides the summaries."""
    probe: ProbeOptions | None = None
    frozen_edges: tuple[tuple[str, tuple[float, ...]], ...] = ()
    """(capture point, bin edges) of live monitoring's reference: the activations of those points are also
    counted on these edges, on the device, so windows add up exactly whatever each request's own range."""


LIVE_SELECTION = Selection(layers=("*",), kinds=frozenset({"activation"}))
"""What a sampled request of live-traffic monitoring captures: every layer's activation summaries, no weights,
no full tensors."""


@dataclass(frozen=True)
class CaptureReply:
    result: CaptureResult
    inputs: dict[str, Summary] = field(default_factory=dict)
    """Input name -> statistics of the prepared input (with `evidence`)."""
    targets: dict[str, TargetInfo] = field(default_factory=dict)
    """Output name -> its targets' statistics and shape (with `evidence` and targets)."""
    losses: tuple[LossSpec, ...] = ()
    probe: ProbeResult | None = None


def check_full_size(size: int, limit: int, outputs: int = 0) -> None:
    """Full tensors of `size` bytes, with the outputs' `outputs` bytes, within `limit`; LimitExceeded otherwise."""
    if size + outputs > limit:
        also = f", and the model's outputs (in the header) {outputs} more" if outputs else ""
        raise LimitExceeded(
            f"Expected full tensors of at most {limit} bytes per capture; the layers asked for hold "
            f"{size} bytes{also}. Ask for fewer layers in `full`, a smaller batch, or raise max_tensor_bytes."
        )
