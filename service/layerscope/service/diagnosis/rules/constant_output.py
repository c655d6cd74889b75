from __future__ import annotations

import numpy as np

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_bool, check_fraction
from layerscope.service.diagnosis.scales import initial_batchnorm
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class ConstantOutput(RuntimeRule):
    """The model's output does not vary across different inputs.

    Symptom: every input gets the same prediction: the signal was lost on the way (dead ReLUs, a zero
    kernel, a saturated or single-unit softmax, a collapsed map), so the model cannot learn anything
    that depends on its input.
    Remedy: look at the other findings for where the signal dies; check weights and biases of the last
    layers, the initialisation and the input scaling.

    Models with untrained BatchNormalization (moving mean 0 and variance 1 everywhere, as after
    weights=None) are skipped unless skip_initial_batchnorm=False: in inference mode those layers do not
    normalise, so one forward pass does not show the scales training will see.
    """

    code = "constant-output"
    severity = Severity.ERROR

    def __init__(self, rel_tolerance: float = 1e-6, skip_initial_batchnorm: bool = True) -> None:
        self.rel_tolerance = check_fraction("rel_tolerance", rel_tolerance)

        self.skip_initial_batchnorm = check_bool("skip_initial_batchnorm", skip_initial_batchnorm)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        if self.skip_initial_batchnorm and initial_batchnorm(description):
            return []
        findings = []
        names = list(evidence.outputs)
        for index, (name, array) in enumerate(evidence.outputs.items()):
            values = np.asarray(array, dtype=np.float64)
            if values.ndim == 0 or values.shape[0] < 2 or values.size == 0 or not np.isfinite(values).all():
                continue
            spread = float(np.max(np.ptp(values, axis=0)))
            scale = float(np.max(np.abs(values)))
            if spread > self.rel_tolerance * scale or (scale == 0.0 and spread > 0.0):
                continue
            layer = description.outputs[index] if len(names) == len(description.outputs) else name
            findings.append(
                self.finding(
                    [layer],
                    f"Output '{name}' (layer '{layer}') is the same for all {values.shape[0]} inputs; expected "
                    f"outputs that vary with the input, received a spread of {spread:.3g} (value "
                    f"{float(values.reshape(values.shape[0], -1)[0, 0]):.4g}).",
                    "Follow the other findings to where the signal dies; check the last layers' weights and "
                    "biases and the initialisation.",
                    {"output": name, "batch": int(values.shape[0]), "spread": spread, "scale": scale},
                )
            )
        return findings
