"""What a runtime rule sees of one forward pass: per-layer summaries, input summaries and the outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.summary import LayerSummaries, Summary
from layerscope.service.domain.training import LossSpec, ProbeResult, TargetInfo


def layer_of(point: str) -> str:
    """The layer a capture point belongs to: `dense` for `dense` and for its second call `dense:1`."""
    return point.rsplit(":", 1)[0]


@dataclass(frozen=True)
class TrainingEvidence:
    """What the training rules see: gradients of the loss on the caller's targets, the targets' statistics,
    the loss in effect, and the short training probe when one ran."""

    gradients: LayerSummaries
    """capture point -> `kernel_gradient` (and other gradient kinds) -> Summary."""
    targets: Mapping[str, TargetInfo]
    """model output name -> its targets, in output order."""
    losses: tuple[LossSpec, ...]
    """The loss of each output, in output order."""
    probe: ProbeResult | None = None
    outputs: tuple[InputSpec, ...] = field(default=())
    """The model's outputs (name, declared shape), in output order: what the targets are checked against.
    With targets that do not fit their loss there are no gradients and no probe (Keras cannot compute
    the loss)."""


@dataclass(frozen=True)
class RuntimeEvidence:
    activations: LayerSummaries
    """capture point (`layer`, `layer:1` for a second call) -> kind (`activation`, ...) -> Summary."""
    inputs: Mapping[str, Summary]
    """model input name -> summary of the array fed to it."""
    outputs: Mapping[str, np.ndarray]
    """model output name -> the output array of the pass."""
    caller_inputs: bool
    """True when the caller gave the inputs; False for generated probes (never judged as unscaled)."""
    training: TrainingEvidence | None = None
    """Set when the caller gave targets: what the training rules read."""

    def activation(self, layer: str) -> Summary | None:
        """The first call's output summary of a layer, if it was captured."""
        return self.activations.get(layer, {}).get("activation")

    def calls(self, layer: str) -> list[tuple[str, Summary]]:
        """(capture point, output summary) for every call of a layer: `layer`, `layer:1`, ..."""
        found = []
        for point, kinds in self.activations.items():
            if (point == layer or layer_of(point) == layer) and "activation" in kinds:
                found.append((point, kinds["activation"]))
        return found
