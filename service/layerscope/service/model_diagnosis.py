"""Diagnosing one loaded model, shared by the server and local audits (`layerscope audit`).

`diagnose` runs the static rules and, over the caller's inputs or generated probes, the runtime rules on
one capture of the activations. It stores nothing: the Inspector does that for the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from layerscope.service import cancellation
from layerscope.service.capture.engine import CaptureResult
from layerscope.service.capture.selection import Selection
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.probes import probe_inputs
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.summary import Summary, summarize
from layerscope.service.models.registry import LoadedModel

ACTIVATIONS = Selection(kinds=frozenset({"activation"}))


@dataclass(frozen=True)
class Diagnosis:
    findings: list[Finding]
    capture: CaptureResult
    inputs_used: str


def describe_inputs(inputs: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name}: {a.dtype.name}{list(a.shape)}" for name, a in inputs.items())


def diagnose(model: LoadedModel, diagnoser: Diagnoser, inputs: Mapping[str, np.ndarray] | None) -> Diagnosis:
    caller = bool(inputs)
    if inputs:
        arrays = dict(inputs)
        used = "caller inputs: " + describe_inputs(arrays)
    else:
        probe = probe_inputs(model.engine.inputs)
        arrays, used = probe.arrays, "probe inputs: " + probe.description
    # Exact: the saturation rule reads its fractions from the histogram, and a finding must not rest on a sample.
    result = model.engine.capture(arrays, ACTIVATIONS, statistics="exact")
    cancellation.check()  # the call may have ended while the model ran: the rules need not run for no one
    prepared = model.engine.prepare(arrays)
    evidence = RuntimeEvidence(
        activations=result.summaries,
        inputs={spec.name: summarize(a) for spec, a in zip(model.engine.inputs, prepared, strict=True)},
        outputs=result.outputs,
        caller_inputs=caller,
    )
    return Diagnosis(diagnoser.diagnose(model.description, evidence), result, used)


def activation_summaries(result: CaptureResult) -> dict[str, Summary]:
    return {point: kinds["activation"] for point, kinds in result.summaries.items() if "activation" in kinds}
