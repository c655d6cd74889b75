from __future__ import annotations

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import RuntimeRule
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.summary import Summary


class NonFinite(RuntimeRule):
    """NaN or Inf in the inputs, weights, bias or activations.

    Symptom: one non-finite value spreads to every value computed from it, so the outputs, the loss and
    every gradient become NaN; training cannot recover. The finding names where it first appears: an input
    (checked on the inputs themselves, since some kernels hide it: a ReLU may turn NaN into 0), else the
    first layer in graph order, which is where to look: a corrupted weight, an overflow, a division by zero
    or a log of a non-positive value.
    Remedy: clean the inputs (missing values, a division by zero in preprocessing); restore the layer's
    weights from a good checkpoint; for overflow lower the learning rate, clip gradients (clipnorm),
    normalise the inputs, or use a numerically stable loss (from_logits=True).
    """

    code = "non-finite"
    severity = Severity.ERROR

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        graph = Graph(description)
        affected: list[tuple[LayerInfo, str, Summary]] = []
        for layer in graph.layers:
            affected.extend((layer, w.kind, w.summary) for w in layer.weights if w.summary.non_finite)
            affected.extend((layer, p, s) for p, s in evidence.calls(layer.name) if s.non_finite)
        layers = list(dict.fromkeys(a[0].name for a in affected))
        inputs = [(name, summary) for name, summary in evidence.inputs.items() if summary.non_finite]
        if inputs:
            return [self._input_finding(inputs, layers)]
        if not affected:
            return []
        layer, where, summary = affected[0]
        is_weight = where in {w.kind for w in layer.weights}
        place = f"its {where} weights" if is_weight else "its output"
        return [
            self.finding(
                [layer.name],
                f"{layer.class_name} '{layer.name}' is the first layer with non-finite values, in {place}: "
                f"expected all finite, received {summary.nan} NaN, {summary.posinf} +Inf and "
                f"{summary.neginf} -Inf of {summary.count}.",
                (
                    f"Restore the weights of '{layer.name}' from a good checkpoint."
                    if is_weight
                    else f"Check the inputs and weights feeding '{layer.name}' for overflow; normalise inputs, "
                    f"lower the learning rate or clip gradients."
                ),
                {
                    "first_layer": layer.name,
                    "where": "weights" if is_weight else "activation",
                    "tensor": where,
                    "nan": summary.nan,
                    "posinf": summary.posinf,
                    "neginf": summary.neginf,
                    "count": summary.count,
                    "affected_layers": len(layers),
                    "affected": layers[:20],
                },
            )
        ]

    def _input_finding(self, inputs: list[tuple[str, Summary]], layers: list[str]) -> Finding:
        name, summary = inputs[0]
        return self.finding(
            [n for n, _ in inputs],
            f"Input '{name}' holds non-finite values before any layer runs: expected all finite, received "
            f"{summary.nan} NaN, {summary.posinf} +Inf and {summary.neginf} -Inf of {summary.count}"
            + (f" ({len(inputs)} inputs affected)." if len(inputs) > 1 else "."),
            "Find where the inputs get NaN or Inf (missing values, a division by zero or a log in preprocessing) "
            "and clean them (np.nan_to_num, or drop those rows): a model cannot learn from them, and some kernels "
            "hide them (a ReLU may turn NaN into 0).",
            {
                "first_layer": name,
                "where": "input",
                "tensor": "input",
                "nan": summary.nan,
                "posinf": summary.posinf,
                "neginf": summary.neginf,
                "count": summary.count,
                "inputs": [n for n, _ in inputs],
                "affected_layers": len(layers),
                "affected": layers[:20],
            },
        )
