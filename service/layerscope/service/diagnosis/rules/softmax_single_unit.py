from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity


class SoftmaxSingleUnit(StaticRule):
    """Softmax over an axis of size 1: the output is always 1.0.

    Symptom: softmax normalises over its axis; over one unit it divides a value by itself, so the layer
    outputs exactly 1.0 whatever the input, the loss never moves and the model predicts one class.
    Remedy: for a binary problem use Dense(1, activation="sigmoid") with binary cross-entropy, or keep
    softmax with one unit per class (Dense(2, activation="softmax")).
    """

    code = "softmax-single-unit"
    severity = Severity.ERROR

    def check_static(self, description: ModelDescription) -> list[Finding]:
        findings = []
        for layer in description.layers:
            axis_size = _softmax_axis_size(layer)
            if axis_size != 1:
                continue
            findings.append(
                self.finding(
                    [layer.name],
                    f"{layer.class_name} '{layer.name}' applies softmax over an axis of size 1 "
                    f"(output shape {lay.shape_text(lay.output_shape(layer))}); expected at least 2 units "
                    f"to normalise over, received 1, so every output is exactly 1.0.",
                    f"Use activation='sigmoid' on '{layer.name}' for one binary output, or give it one unit "
                    f"per class with softmax.",
                    {"axis_size": 1, "output_shape": list(lay.output_shape(layer) or ())},
                )
            )
        return findings


def _softmax_axis_size(layer: LayerInfo) -> int | None:
    if lay.activation(layer) != "softmax":
        return None
    shape = lay.output_shape(layer)
    if not shape:
        return None
    axis = layer.config.get("axis", -1) if layer.class_name == "Softmax" else -1
    axes = axis if isinstance(axis, list) else [axis]
    try:
        sizes = [shape[int(a)] for a in axes]
    except (IndexError, TypeError, ValueError):
        return None
    if any(s is None for s in sizes):
        return None
    total = 1
    for s in sizes:
        total *= int(s or 0)
    return total
