from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_bool
from layerscope.service.domain import Finding, LayerInfo, ModelDescription, Severity


class MissingNonlinearity(StaticRule):
    """Two learning layers (Dense/Conv) in a row with no non-linearity between them.

    Symptom: the composition of two linear maps is one linear map: the pair adds parameters and depth
    but no expressive power (normalisation, dropout and reshapes in between do not change that).
    Remedy: give the first layer an activation (activation="relu"), or add an Activation/ReLU layer
    between them; remove one of the two if the linearity was intended.

    Pointwise (1x1) convolution pairs are left alone by default: the linear bottleneck of MobileNetV2 and
    EfficientNet (a linear 1x1 projection followed by a 1x1 expansion) is linear on purpose.
    """

    code = "missing-nonlinearity"
    severity = Severity.WARNING

    def __init__(self, allow_pointwise_bottleneck: bool = True) -> None:
        self.allow_pointwise_bottleneck = check_bool("allow_pointwise_bottleneck", allow_pointwise_bottleneck)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            if not lay.is_learning(layer) or lay.activation(layer) is not None:
                continue
            for following in graph.downstream(layer, _linear_passage):
                if not lay.is_learning(following) or self._allowed(layer, following):
                    continue
                findings.append(
                    self.finding(
                        [layer.name, following.name],
                        f"{layer.class_name} '{layer.name}' (activation linear) feeds {following.class_name} "
                        f"'{following.name}' with no non-linearity between them; expected an activation, "
                        f"received none: together they are one linear map.",
                        f"Set activation='relu' on '{layer.name}' or add a ReLU layer after it.",
                        {"first": layer.name, "second": following.name},
                    )
                )
        return findings

    def _allowed(self, first: LayerInfo, second: LayerInfo) -> bool:
        if not self.allow_pointwise_bottleneck:
            return False
        return _pointwise(first) and _pointwise(second)


def _pointwise(layer: LayerInfo) -> bool:
    return lay.is_conv(layer) and all(k == 1 for k in lay.window(layer))


def _linear_passage(layer: LayerInfo) -> bool:
    """Layers that let a linear signal through unchanged in kind: it stays linear after them."""
    if lay.activation(layer) is not None:
        return False
    return (
        lay.is_transparent(layer)
        or lay.is_normalization(layer)
        or layer.class_name in lay.RESHAPE_LAYERS | lay.FLATTENING_LAYERS | {"ZeroPadding2D", "Cropping2D"}
    )
