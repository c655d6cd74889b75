"""Diagnosing one loaded model, shared by the server and local audits (`layerscope audit`).

`diagnose` runs the static rules and, over the caller's inputs or generated probes, the runtime rules on
one capture of the activations. It stores nothing: the Inspector does that for the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from layerscope.service import cancellation
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.evidence import RuntimeEvidence, TrainingEvidence
from layerscope.service.diagnosis.synthetic_inputs import probe_inputs
from layerscope.service.domain.capture import CaptureRequest, CaptureResult, ProbeOptions
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.inputs import check_inputs
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import ProbeResult, TrainingOptions
from layerscope.service.errors import InvalidInput, LimitExceeded

if TYPE_CHECKING:  # the engine and the models import TensorFlow; diagnosis only names their types
    from layerscope.service.models.registry import Engine, LoadedModel

ACTIVATIONS = Selection(kinds=frozenset({"activation"}))
WITH_GRADIENTS = Selection(kinds=frozenset({"activation", "kernel_gradient"}))
DEFAULT_PROBE_STEPS = 5
MAX_PROBE_STEPS = 50
PROBE_ROWS = 24
MIN_PROBE_ROWS = 3
"""Every distribution of the generated probes appears in at least one row."""


@dataclass(frozen=True)
class ProbeLimits:
    """How many probe steps a diagnosis with targets runs when the caller does not say, and at most."""

    default_steps: int = DEFAULT_PROBE_STEPS
    max_steps: int = MAX_PROBE_STEPS
    probe_rows: int = PROBE_ROWS
    """Rows of generated probe inputs when the caller sends none (fewer for a model that accepts fewer)."""

    def steps(self, asked: int | None) -> int:
        steps = self.default_steps if asked is None else asked
        if steps < 0:
            raise InvalidInput(f"Expected probe_steps >= 0 (0: no probe); received {steps}.")
        if steps > self.max_steps:
            raise LimitExceeded(f"Expected probe_steps of at most {self.max_steps}; received {steps}.")
        return steps


@dataclass(frozen=True)
class Diagnosis:
    findings: list[Finding]
    capture: CaptureResult
    inputs_used: str
    probe: ProbeResult | None = None


def describe_inputs(inputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name}: {a.dtype.name}{list(a.shape)}" for name, a in inputs.items())


def diagnose(
    model: LoadedModel,
    diagnoser: Diagnoser,
    inputs: Mapping[str, np.ndarray] | None,
    training: TrainingOptions | None = None,
    limits: ProbeLimits | None = None,
) -> Diagnosis:
    """Static and runtime findings; with targets (`training.targets`) the training rules too, on the
    gradients of the loss and on a short probe of optimizer steps on a copy of the weights."""
    if inputs:
        check_inputs(model.info.name, model.engine.inputs, inputs)
    if training is not None and training.targets:
        if not inputs:
            raise InvalidInput(
                "Expected inputs x with the targets y (targets are for the caller's inputs); received none."
            )
        return _diagnose_training(model, diagnoser, inputs, training, limits or ProbeLimits())
    caller = bool(inputs)
    if inputs:
        arrays = dict(inputs)
        used = "caller inputs: " + describe_inputs(arrays)
    else:
        rows = (limits or ProbeLimits()).probe_rows
        probe = probe_inputs(model.engine.inputs, batch=rows, description=model.description)
        arrays, used = probe.arrays, "probe inputs: " + probe.description
    # Exact: the saturation rule reads its fractions from the histogram, and a finding must not rest on a sample.
    reply = model.engine.run(CaptureRequest(arrays, ACTIVATIONS, statistics="exact", evidence=True))
    cancellation.check()  # the call may have ended while the model ran: the rules need not run for no one
    evidence = RuntimeEvidence(
        activations=reply.result.summaries,
        inputs=reply.inputs,
        outputs=reply.result.outputs,
        caller_inputs=caller,
    )
    return Diagnosis(diagnoser.diagnose(model.description, evidence), reply.result, used)


def _diagnose_training(
    model: LoadedModel,
    diagnoser: Diagnoser,
    inputs: Mapping[str, np.ndarray],
    training: TrainingOptions,
    limits: ProbeLimits,
) -> Diagnosis:
    steps = limits.steps(training.probe_steps)
    arrays, targets = dict(inputs), dict(training.targets or {})
    result, evidence = training_evidence(model.engine, arrays, targets, training, steps)
    used = "caller inputs and targets: " + describe_inputs(arrays) + "; targets " + describe_inputs(targets)
    probe = evidence.training.probe if evidence.training else None
    return Diagnosis(diagnoser.diagnose(model.description, evidence), result, used, probe)


def training_evidence(
    engine: Engine,
    inputs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    training: TrainingOptions,
    probe_steps: int,
) -> tuple[CaptureResult, RuntimeEvidence]:
    """One exact capture of activations and kernel gradients and (probe_steps > 0) the probe: one engine call.
    Targets the loss cannot score against the outputs are captured without gradients or probe, and the rule
    target-loss-mismatch reads their statistics."""
    probe = ProbeOptions(probe_steps, training.optimizer, training.learning_rate) if probe_steps > 0 else None
    request = CaptureRequest(
        inputs, WITH_GRADIENTS, statistics="exact", targets=targets, loss=training.loss, evidence=True, probe=probe
    )
    reply = engine.run(request)
    result = reply.result
    gradients = {
        point: {k: s for k, s in kinds.items() if k.endswith("gradient")} for point, kinds in result.summaries.items()
    }
    evidence = RuntimeEvidence(
        activations=result.summaries,
        inputs=reply.inputs,
        outputs=result.outputs,
        caller_inputs=True,
        training=TrainingEvidence(
            gradients={p: kinds for p, kinds in gradients.items() if kinds},
            targets=reply.targets,
            losses=reply.losses,
            probe=reply.probe,
        ),
    )
    return result, evidence


def activation_summaries(result: CaptureResult) -> dict[str, Summary]:
    return {point: kinds["activation"] for point, kinds in result.summaries.items() if "activation" in kinds}
