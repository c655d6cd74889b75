"""The work one call may ask of a model: its batch times what one sample declares, bounded before it runs.

The declared-size budget (`models/budget.py`) bounds a model per sample: one layer's output, all of them
together. Memory is per batch: a layer of 128 MiB per sample is 128 GiB at a batch of 1024. So each loaded
model gets the largest batch it accepts: the server's batch bound, lowered until batch x its largest layer
output stays within `max_layer_bytes` and batch x all its layer outputs within `max_total_bytes`. Calls
(Predict, sampled ones included, Capture, Diagnose, ModelInfer) larger than that are refused before they
run, naming the batch that would be accepted; ListModels publishes it, so callers can size their batches.

A free (None) non-batch dimension counts as 1 in the declared sizes; a call that fills it with more is taken
to scale every layer output by as much (`input_scale`): too much for a layer that pools the free dimension
away, too little for one whose cost grows faster than its input (attention), exact for the common case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from layerscope.service.domain.description import InputSpec
from layerscope.service.errors import LimitExceeded


@dataclass(frozen=True)
class SampleCost:
    """What one sample of a model declares, in bytes by dtype (free dimensions counted as 1)."""

    largest_layer: str
    largest_layer_bytes: int
    """The largest single layer output."""
    total_bytes: int
    """Every layer output together: what one sample's forward pass writes (a backward pass keeps it all)."""


@dataclass(frozen=True)
class CallBounds:
    max_batch_size: int = 1024
    max_layer_bytes: int = 1 << 30
    """One layer's output for a whole batch: 1 GiB (8 samples of the largest layer a model may declare)."""
    max_total_bytes: int = 16 << 30
    """Every layer output of one call together: 16 GiB (2 samples of the most a model may declare)."""

    def largest_batch(self, cost: SampleCost | None) -> int:
        """The largest batch a model of this cost accepts; 0 when not even one sample fits."""
        batch = self.max_batch_size
        if cost is not None and cost.largest_layer_bytes > 0:
            batch = min(batch, self.max_layer_bytes // cost.largest_layer_bytes)
        if cost is not None and cost.total_bytes > 0:
            batch = min(batch, self.max_total_bytes // cost.total_bytes)
        return batch

    def why(self, cost: SampleCost) -> str:
        """Which bound sets the largest batch of a model of this cost, in words."""
        by_layer = self.max_layer_bytes // max(1, cost.largest_layer_bytes)
        by_total = self.max_total_bytes // max(1, cost.total_bytes)
        if min(by_layer, by_total) >= self.max_batch_size:
            return f"the server's batch bound (LAYERSCOPE_MAX_BATCH_SIZE={self.max_batch_size})"
        if by_layer <= by_total:
            return (
                f"its largest layer output '{cost.largest_layer}' declares {cost.largest_layer_bytes} bytes per "
                f"sample and one layer output of a call may hold {self.max_layer_bytes} bytes "
                "(LAYERSCOPE_MAX_CALL_LAYER_BYTES)"
            )
        return (
            f"its layer outputs declare {cost.total_bytes} bytes per sample in all and those of a call may hold "
            f"{self.max_total_bytes} bytes (LAYERSCOPE_MAX_CALL_TOTAL_BYTES)"
        )


def input_scale(specs: Sequence[InputSpec], inputs: Mapping[str, np.ndarray]) -> float:
    """How many times its declared size (free dimensions counted as 1) the largest input of a call is, per
    sample; 1 for a model without free dimensions, or for inputs that do not match (refused later)."""
    declared = {spec.name: math.prod(d or 1 for d in spec.shape[1:]) for spec in specs}
    if len(specs) == 1 and len(inputs) == 1:
        inputs = {specs[0].name: next(iter(inputs.values()))}
    scale = 1.0
    for name, array in inputs.items():
        if name in declared and array.ndim and array.shape[0]:
            scale = max(scale, (array.size / array.shape[0]) / max(1, declared[name]))
    return scale


def check_call(
    title: str, cost: SampleCost | None, bounds: CallBounds, batch: int, scale: float = 1.0, what: str = "a batch"
) -> None:
    """Raise LimitExceeded (RESOURCE_EXHAUSTED) when `batch` rows, at `scale` times the declared input size,
    ask more of the model than the bounds allow; the message names the largest batch that fits."""
    if cost is None:
        return
    largest = bounds.largest_batch(cost)
    if batch * scale <= largest:
        return
    advice = "Send smaller batches (ListModels gives each model's max_batch_size)."
    if what == "probe inputs":
        advice = "Send inputs of your own: fewer rows, or less in the free dimensions."
    if scale <= 1:
        raise LimitExceeded(
            f"Expected {what} of at most {largest} rows for {title}: {bounds.why(cost)}; received {batch}. {advice}"
        )
    raise LimitExceeded(
        f"Expected {what} of at most {largest} rows of the declared input size for {title} (batch x input size; "
        f"free dimensions are declared as 1): {bounds.why(cost)}; received {batch} rows at {scale:g} times the "
        f"declared size, {math.floor(largest / scale)} rows at most. {advice}"
    )


def check_inputs(
    title: str,
    cost: SampleCost | None,
    specs: Sequence[InputSpec],
    bounds: CallBounds,
    inputs: Mapping[str, np.ndarray],
) -> None:
    """`check_call` for a call's input arrays: their batch, and their size against the declared one."""
    batch = max((int(a.shape[0]) if a.ndim else 1 for a in inputs.values()), default=0)
    check_call(title, cost, bounds, batch, input_scale(specs, inputs))


def probe_rows(
    title: str,
    cost: SampleCost | None,
    specs: Sequence[InputSpec],
    bounds: CallBounds,
    rows: tuple[int, int],
    free_dimension: int,
) -> int:
    """How many rows of generated probe inputs (`rows`: at least, at most) fit the bound, where the probes put
    `free_dimension` in every free dimension; LimitExceeded when not even the least does."""
    least, most = rows
    free = max((sum(d is None for d in spec.shape[1:]) for spec in specs), default=0)
    scale = float(free_dimension**free)
    fits = int(bounds.largest_batch(cost) / scale) if cost is not None else most
    chosen = max(least, min(most, fits))
    check_call(title, cost, bounds, chosen, scale, "probe inputs")
    return chosen
