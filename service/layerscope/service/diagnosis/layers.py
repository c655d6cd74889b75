"""What a rule needs to know about a layer class and config, read from `LayerInfo` as data."""

from __future__ import annotations

from collections.abc import Sequence

from layerscope.service.domain.description import LayerInfo, Shape

LINEAR = frozenset({None, "linear"})
RELU_FAMILY = frozenset({"relu", "relu6"})
SATURATING = frozenset({"sigmoid", "tanh", "hard_sigmoid", "hard_tanh"})
PROBABILITY = frozenset({"sigmoid", "softmax"})

ACTIVATION_LAYERS = frozenset({"Activation", "ReLU", "Softmax", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU"})
DROPOUT_LAYERS = frozenset(
    {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "AlphaDropout"}
)
TRANSPARENT_LAYERS = DROPOUT_LAYERS | frozenset({"GaussianNoise", "ActivityRegularization", "Identity"})
"""Layers that change neither the arrangement nor the non-linearity of what passes through."""
NORMALIZATION_LAYERS = frozenset(
    {"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization"}
)
RESHAPE_LAYERS = frozenset({"Reshape", "Permute", "RepeatVector"})
PREPROCESSING_LAYERS = frozenset({"Rescaling", "Normalization", "Resizing", "CenterCrop", "Embedding"})
FLATTENING_LAYERS = frozenset({"Flatten"})


def activation(layer: LayerInfo) -> str | None:
    """The non-linearity a layer applies, or None for linear (no activation, or `linear`)."""
    name = layer.activation
    if name is None:
        return None
    name = name.lower()
    if name == "relu" and layer.class_name == "ReLU":
        if layer.config.get("max_value") == 6:
            return "relu6"
        if float(layer.config.get("negative_slope") or 0.0) > 0.0:
            return "leaky_relu"
    return None if name in LINEAR else name


def is_dense(layer: LayerInfo) -> bool:
    return layer.class_name in {"Dense", "EinsumDense"}


def is_conv(layer: LayerInfo) -> bool:
    return "Conv" in layer.class_name and not layer.class_name.startswith("ConvLSTM")


def is_transposed_conv(layer: LayerInfo) -> bool:
    return is_conv(layer) and layer.class_name.endswith("Transpose")


def is_pool(layer: LayerInfo) -> bool:
    return "Pooling" in layer.class_name and not layer.class_name.startswith("Global")


def is_global_pool(layer: LayerInfo) -> bool:
    return layer.class_name.startswith("Global") and "Pool" in layer.class_name


def is_learning(layer: LayerInfo) -> bool:
    """A layer with a kernel that learns a linear map: Dense or a convolution."""
    return is_dense(layer) or is_conv(layer)


def is_activation_layer(layer: LayerInfo) -> bool:
    return layer.class_name in ACTIVATION_LAYERS and activation(layer) is not None


def is_transparent(layer: LayerInfo) -> bool:
    return layer.class_name in TRANSPARENT_LAYERS


def is_normalization(layer: LayerInfo) -> bool:
    return layer.class_name in NORMALIZATION_LAYERS


def is_merge(layer: LayerInfo) -> bool:
    return layer.class_name in {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}


def input_shape(layer: LayerInfo) -> Shape | None:
    return layer.input_shapes[0] if layer.input_shapes else None


def output_shape(layer: LayerInfo) -> Shape | None:
    return layer.output_shapes[0] if layer.output_shapes else None


def spatial(shape: Shape | None) -> Shape:
    """The spatial dimensions of a channels-last (batch, *spatial, channels) shape."""
    return tuple(shape[1:-1]) if shape is not None and len(shape) >= 3 else ()


def units(layer: LayerInfo) -> int | None:
    """The size of a layer's output last axis, when known."""
    shape = output_shape(layer)
    return shape[-1] if shape else None


def window(layer: LayerInfo) -> tuple[int, ...]:
    """Kernel size of a convolution or pool size of a pooling layer, as a tuple."""
    value = layer.config.get("kernel_size") if is_conv(layer) else layer.config.get("pool_size")
    return ints(value)


def strides(layer: LayerInfo) -> tuple[int, ...]:
    value = layer.config.get("strides")
    if value is None and is_pool(layer):  # Keras pools default their strides to the pool size
        return window(layer)
    return ints(value)


def ints(value: object) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(int(v) for v in value if isinstance(v, int))
    return ()


def shape_text(shape: Shape | None) -> str:
    if shape is None:
        return "(unknown)"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
