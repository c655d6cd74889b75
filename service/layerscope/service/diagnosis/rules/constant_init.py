from __future__ import annotations

from collections.abc import Mapping

from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.domain.description import LayerInfo, ModelDescription, WeightInfo
from layerscope.service.domain.findings import Finding, Severity

KERNELS = frozenset({"kernel", "depthwise_kernel", "pointwise_kernel"})


class ConstantInit(StaticRule):
    """A kernel initialised to a constant, or with identical units: symmetry never breaks.

    Symptom: units with identical incoming weights compute identical outputs and receive identical
    gradients, so they stay copies of each other forever: a layer of N units learns like a layer of one
    (all zeros is the extreme case: no gradient flows through at all).
    Remedy: use a random initialiser (the default glorot_uniform, or he_normal before relu); keep
    constant initialisers for biases.
    """

    code = "constant-init"
    severity = Severity.ERROR

    def check_static(self, description: ModelDescription) -> list[Finding]:
        findings = []
        for layer in description.layers:
            for weight in layer.weights:
                if weight.kind in KERNELS and weight.identical_units:
                    findings.append(self._finding(layer, weight))
        return findings

    def _finding(self, layer: LayerInfo, weight: WeightInfo) -> Finding:
        units = weight.shape[-1] if weight.shape else None
        initializer = _initializer(layer, weight.kind)
        value = f"the constant {weight.summary.min:g}" if weight.summary.min == weight.summary.max else "copies"
        return self.finding(
            [layer.name],
            f"{layer.class_name} '{layer.name}' has {units} units whose {weight.kind} weights are identical "
            f"({value}; initializer {initializer}); expected distinct units, received {units} copies of one.",
            f"Initialise '{layer.name}' with a random initializer such as 'glorot_uniform' or 'he_normal'.",
            {
                "weight": weight.kind,
                "shape": list(weight.shape),
                "units": units,
                "initializer": initializer,
                "min": weight.summary.min,
                "max": weight.summary.max,
            },
        )


def _initializer(layer: LayerInfo, kind: str) -> str:
    value = layer.config.get(f"{kind}_initializer")
    if isinstance(value, Mapping):
        return str(value.get("class_name", "unknown"))
    return str(value) if value is not None else "unknown"
