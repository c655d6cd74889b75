from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule, check_bool
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity

AFFINE_NORMALIZATIONS = frozenset({"BatchNormalization"})
"""Normalisations that are an affine map at inference (fixed moving mean and variance, then scale and
shift): a linear signal stays linear through them."""
RESIDUAL_MERGES = frozenset({"Add", "Average", "Subtract"})
"""Merges that sum a skip connection into a branch: the signal they take in is the residual stream."""


class MissingNonlinearity(StaticRule):
    """Two learning layers (Dense/Conv) in a row with no non-linearity between them.

    Symptom: the composition of two linear maps is one linear map: the pair adds parameters and depth
    but no expressive power (dropout, reshapes and BatchNormalization, an affine map at inference, in
    between do not change that).
    Remedy: give the first layer an activation (activation="relu"), or add an Activation/ReLU layer
    between them; remove one of the two if the linearity was intended.

    Per-sample normalisations between the two (LayerNormalization, GroupNormalization, UnitNormalization)
    count as a non-linearity: they divide each sample by a statistic of that sample, which is no affine
    map, so the pair is no longer one linear map (ConvNeXt's depthwise conv -> LayerNormalization ->
    Dense, a transformer's projection -> LayerNormalization -> MLP).

    Pairs that are linear on purpose are left alone by default, each behind its own switch.
    Pointwise bottlenecks (allow_pointwise_bottleneck): a linear 1x1 projection followed by a 1x1
    expansion, the linear bottleneck of MobileNetV2 and EfficientNet.
    Residual streams (allow_residual_stream): the first layer's linear output also feeds a residual
    merge (Add, Average, Subtract), as ConvNeXt's down-sampling conv feeds both the next block's depthwise
    conv and the block's skip connection: the pre-activation residual design (ResNet v2, ConvNeXt,
    transformers) keeps the stream linear on purpose, so that the skip carries an identity. Neither remedy
    fits there: an activation on the first layer would put a non-linearity on the identity path, and
    neither layer can go, since the skip needs the stream as it is and the second layer opens the residual
    branch, where the block puts its non-linearity. A plain fan-out with no residual merge (a linear trunk
    feeding two heads) is still reported: each head is one linear map with the trunk.
    Separable pairs (allow_separable): a depthwise convolution (DepthwiseConv1D/2D, or a Conv with
    groups equal to its input channels) next to a layer that mixes channels (Dense or any Conv that is not
    depthwise), in either order. The depthwise conv mixes no channels and the other layer little or no
    space, so the pair is a factorised convolution, far cheaper than the one full convolution it equals:
    Keras's own SeparableConv2D applies no activation between its depthwise and pointwise steps, nor do
    Xception, blueprint separable convolutions (pointwise, then depthwise) or ConvNeXt between its
    down-sampling conv and the next depthwise conv. Two depthwise convs in a row, or two channel-mixing
    layers, are still reported.
    """

    code = "missing-nonlinearity"
    severity = Severity.WARNING

    def __init__(
        self,
        allow_pointwise_bottleneck: bool = True,
        allow_residual_stream: bool = True,
        allow_separable: bool = True,
    ) -> None:
        self.allow_pointwise_bottleneck = check_bool("allow_pointwise_bottleneck", allow_pointwise_bottleneck)
        self.allow_residual_stream = check_bool("allow_residual_stream", allow_residual_stream)
        self.allow_separable = check_bool("allow_separable", allow_separable)

    def check_static(self, description: ModelDescription) -> list[Finding]:
        graph = Graph(description)
        findings = []
        for layer in graph.layers:
            if not lay.is_learning(layer) or lay.activation(layer) is not None:
                continue
            reached = list(graph.downstream(layer, _linear_passage))
            if self.allow_residual_stream and any(node.class_name in RESIDUAL_MERGES for node in reached):
                continue
            for following in reached:
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
        # keras.applications' ConvNeXt joins its residuals with `x + y` ops, which the model description
        # does not hold as layers: there the down-sampling conv's skip is invisible and the separable
        # exemption is what keeps its pair with the next depthwise conv quiet.
        if self.allow_pointwise_bottleneck and _pointwise(first) and _pointwise(second):
            return True
        return self.allow_separable and _depthwise(first) != _depthwise(second)


def _pointwise(layer: LayerInfo) -> bool:
    return lay.is_conv(layer) and all(k == 1 for k in lay.window(layer))


def _depthwise(layer: LayerInfo) -> bool:
    """A convolution that filters each input channel on its own: DepthwiseConv1D/2D, or groups equal to
    the input channels (ConvNeXt writes its depthwise convs as Conv2D(groups=channels))."""
    if not lay.is_conv(layer):
        return False
    if layer.class_name.startswith("DepthwiseConv"):
        return True
    groups = layer.config.get("groups")
    shape = lay.input_shape(layer)
    return isinstance(groups, int) and groups > 1 and shape is not None and shape[-1] == groups


def _linear_passage(layer: LayerInfo) -> bool:
    """Layers that let a linear signal through unchanged in kind: it stays linear after them. Per-sample
    normalisations (LayerNormalization, ...) are not among them: they divide by a statistic of the input."""
    if lay.activation(layer) is not None:
        return False
    return (
        lay.is_transparent(layer)
        or layer.class_name in AFFINE_NORMALIZATIONS
        or layer.class_name in lay.RESHAPE_LAYERS | lay.FLATTENING_LAYERS | {"ZeroPadding2D", "Cropping2D"}
    )
