from __future__ import annotations

from layerscope.service.diagnosis.evidence import TrainingEvidence
from layerscope.service.diagnosis.rules.base import TrainingRule, check_fraction
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class UnitsDieInTraining(TrainingRule):
    """ReLU-family units alive at the start are dead after the probe's steps.

    Symptom: one large update pushes a ReLU unit's pre-activation below zero for every example; from
    then on it outputs 0, gets no gradient and never recovers. A layer that loses most of its units in a
    handful of steps has a learning rate or gradient scale that will kill the rest of the network too.
    Remedy: a lower learning rate, gradient clipping, He initialisation, BatchNormalization before the
    activation, or LeakyReLU/ELU, which keep a gradient below zero.
    """

    code = "units-die-in-training"
    severity = Severity.WARNING

    def __init__(self, min_newly_dead: float = 0.25, min_dead_after: float = 0.5) -> None:
        self.min_newly_dead = check_fraction("min_newly_dead", min_newly_dead)
        self.min_dead_after = check_fraction("min_dead_after", min_dead_after)

    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        probe = training.probe
        if probe is None or len(probe.steps) < 2:
            return []
        first, last = probe.steps[0].dead_fractions, probe.steps[-1].dead_fractions
        findings = []
        for layer in description.layers:
            if layer.name not in first or layer.name not in last:
                continue
            before, after = first[layer.name], last[layer.name]
            if after - before < self.min_newly_dead or after < self.min_dead_after:
                continue
            findings.append(
                self.finding(
                    [layer.name],
                    f"{layer.class_name} '{layer.name}' had {before:.0%} dead units before the probe and "
                    f"{after:.0%} after {len(probe.steps) - 1} steps of {probe.optimizer}; expected at most "
                    f"{self.min_newly_dead:.0%} of its units to die, received {after - before:.0%}.",
                    f"Lower the learning rate or clip gradients; use he_normal initialisation, "
                    f"BatchNormalization before the activation, or LeakyReLU in '{layer.name}'.",
                    {
                        "dead_before": before,
                        "dead_after": after,
                        "dead_by_step": [s.dead_fractions.get(layer.name) for s in probe.steps],
                        "optimizer": probe.optimizer,
                    },
                )
            )
        return findings
