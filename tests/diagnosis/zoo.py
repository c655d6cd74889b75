"""A zoo of tiny, named, seeded models: for every finding code, models that must fire it and near misses
that must not: a rule is only trusted once it stays quiet on the model one change away. Each builder takes
well under a second."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

L = keras.layers


@dataclass(frozen=True)
class Case:
    code: str
    build: Callable[[], keras.Model]
    fires: bool
    layers: tuple[str, ...] = ()
    """The layers the finding names: exactly these, in this order."""
    message: str = ""
    """A fragment the finding's message must contain."""
    inputs: Callable[[keras.Model], dict[str, np.ndarray]] | None = None
    """Caller inputs for a runtime rule; None means seeded probe inputs."""
    compile: dict[str, object] = field(default_factory=dict)
    """model.compile(**compile) before describing (for rules that read the compile config)."""
    also: tuple[tuple[str, ...], ...] = ()
    """The layers of each further finding of the code, where the model legitimately earns several."""
    targets: Callable[[keras.Model], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] | None = None
    """Inputs and targets for a training rule: its evidence comes from gradients and a probe on them."""

    @property
    def count(self) -> int:
        """How many findings of the code the model must yield: none, or the one naming `layers` and `also`."""
        return 1 + len(self.also) if self.fires else 0

    @property
    def id(self) -> str:
        return f"{self.code}:{'fires' if self.fires else 'silent'}:{self.build.__name__}"


def seeded() -> None:
    keras.utils.set_random_seed(0)


def scale_weights(layer: keras.layers.Layer, kernel: float = 1.0, bias: float = 0.0) -> None:
    """Multiply a layer's kernel and add to its bias: a quick way to make a layer misbehave."""
    weights = layer.get_weights()
    weights[0] = weights[0] * kernel
    if len(weights) > 1:
        weights[1] = weights[1] + bias
    layer.set_weights(weights)


# -- softmax-single-unit -------------------------------------------------------------------------------


def mlp_softmax_one_unit() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="hidden"),
            L.Dense(1, activation="softmax", name="prob"),
        ],
        name="mlp_softmax_one_unit",
    )


def cnn_softmax_layer_one_unit() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(2, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(1, name="logit")(x)
    return keras.Model(image, L.Softmax(name="softmax")(x), name="cnn_softmax_layer_one_unit")


def mlp_sigmoid_one_unit() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="hidden"),
            L.Dense(1, activation="sigmoid", name="prob"),
        ],
        name="mlp_sigmoid_one_unit",
    )


# -- output-loss-mismatch ------------------------------------------------------------------------------


def mlp_sigmoid_three() -> keras.Model:
    seeded()
    return keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="relu", name="hidden"), L.Dense(3, activation="sigmoid", name="out")],
        name="mlp_sigmoid_three",
    )


def cnn_logits() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(4, name="logits")(x), name="cnn_logits")


def nested_softmax_head() -> keras.Model:
    seeded()
    features = keras.Input((6,), name="features")
    head = keras.Model(features, L.Dense(2, activation="softmax", name="probs")(features), name="head")
    x = keras.Input((4,), name="x")
    h = L.Dense(6, activation="relu", name="trunk")(x)
    return keras.Model(x, head(h), name="nested_softmax_head")


# -- dense-on-spatial ----------------------------------------------------------------------------------


def cnn_dense_on_conv() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    conv = L.Conv2D(2, 3, name="conv")(image)
    return keras.Model(image, L.Dense(3, name="head")(conv), name="cnn_dense_on_conv")


def sequential_dense_after_pool() -> keras.Model:
    """A Dense on the pooled (3, 3, 4) map, then Flatten before the head: the Dense is a pointwise (1x1)
    projection whose map is flattened before the output, the same as Conv2D(4, 1) there, so no error."""
    seeded()
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            L.Conv2D(4, 3, activation="relu", name="conv"),
            L.MaxPooling2D(name="pool"),
            L.Dropout(0.2, name="drop"),
            L.Dense(4, activation="relu", name="dense"),
            L.Flatten(name="flatten"),
            L.Dense(2, name="out"),
        ],
        name="sequential_dense_after_pool",
    )


def nested_conv_block_then_dense() -> keras.Model:
    seeded()
    inner = keras.Input((8, 8, 1), name="inner")
    block = keras.Model(inner, L.Conv2D(3, 3, activation="relu", name="conv")(inner), name="block")
    image = keras.Input((8, 8, 1), name="image")
    return keras.Model(image, L.Dense(2, name="head")(block(image)), name="nested_conv_block_then_dense")


def sequence_dense_per_step() -> keras.Model:
    """Dense on a (steps, features) input: per time step on purpose, not an image path."""
    seeded()
    steps = keras.Input((10, 6), name="steps")
    x = L.Dense(4, activation="relu", name="per_step")(steps)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(steps, L.Dense(1, name="out")(x), name="sequence_dense_per_step")


def cnn_global_pool_then_dense() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="cnn_global_pool_then_dense")


def sequential_conv1d_pool_then_dense() -> keras.Model:
    """A 1D signal CNN that forgot Flatten: Dense on the (None, 15, 8) pooled map, a rank-3 input."""
    seeded()
    return keras.Sequential(
        [
            keras.Input((32, 1)),
            L.Conv1D(8, 3, activation="relu", name="conv"),
            L.MaxPooling1D(2, name="pool"),
            L.Dense(16, activation="relu", name="hidden"),
            L.Dense(1, activation="sigmoid", name="out"),
        ],
        name="sequential_conv1d_pool_then_dense",
    )


def functional_conv2d_reshape_dense() -> keras.Model:
    """A (6, 6, 4) map reshaped to (36, 4) positions: Dense still works per position, not on the map."""
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.Reshape((36, 4), name="reshape")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="functional_conv2d_reshape_dense")


def nested_conv1d_block_then_dense() -> keras.Model:
    """A nested Conv1D + BatchNormalization + ReLU block, then Dropout and a Dense on its rank-3 output."""
    seeded()
    inner = keras.Input((20, 2), name="inner")
    x = L.Conv1D(4, 3, use_bias=False, name="conv")(inner)
    x = L.BatchNormalization(name="bn")(x)
    block = keras.Model(inner, L.Activation("relu", name="act")(x), name="block")
    signal = keras.Input((20, 2), name="signal")
    x = L.Dropout(0.2, name="drop")(block(signal))
    return keras.Model(signal, L.Dense(2, name="head")(x), name="nested_conv1d_block_then_dense")


def embedding_dense_per_token() -> keras.Model:
    """Dense on (None, 10, 8) embeddings: per token on purpose, a sequence path."""
    seeded()
    tokens = keras.Input((10,), dtype="int32", name="tokens")
    x = L.Embedding(50, 8, name="embed")(tokens)
    return keras.Model(tokens, L.Dense(4, activation="softmax", name="per_token")(x), name="embedding_dense_per_token")


def lstm_sequences_then_dense() -> keras.Model:
    """A sequence tagger: LSTM(return_sequences=True) then a Dense per time step."""
    seeded()
    steps = keras.Input((12, 6), name="steps")
    x = L.LSTM(8, return_sequences=True, name="lstm")(steps)
    return keras.Model(steps, L.Dense(3, activation="softmax", name="tags")(x), name="lstm_sequences_then_dense")


def cnn_gru_sequence_tagger() -> keras.Model:
    """Conv1D features feed a GRU with return_sequences: the Dense after it is on a sequence path."""
    seeded()
    steps = keras.Input((24, 3), name="steps")
    x = L.Conv1D(8, 3, activation="relu", name="conv")(steps)
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.GRU(8, return_sequences=True, name="gru")(x)
    x = L.Dropout(0.2, name="drop")(x)
    return keras.Model(steps, L.Dense(3, activation="softmax", name="tags")(x), name="cnn_gru_sequence_tagger")


def conv1d_global_pool_then_dense() -> keras.Model:
    seeded()
    signal = keras.Input((32, 2), name="signal")
    x = L.Conv1D(8, 3, activation="relu", name="conv")(signal)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(signal, L.Dense(1, activation="sigmoid", name="head")(x), name="conv1d_global_pool_then_dense")


def conv1d_pool_flatten_then_dense() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((32, 1)),
            L.Conv1D(8, 3, activation="relu", name="conv"),
            L.MaxPooling1D(2, name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(1, activation="sigmoid", name="out"),
        ],
        name="conv1d_pool_flatten_then_dense",
    )


def conv_patches_attention_block() -> keras.Model:
    """Conv2D patch embedding reshaped to tokens, one attention block with a residual, then a per-token
    MLP: a transformer on purpose, although the residual reaches back to the Conv2D."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 4, strides=4, name="patches")(image)
    tokens = L.Reshape((4, 8), name="tokens")(x)
    attended = L.MultiHeadAttention(2, 4, name="attention")(tokens, tokens)
    x = L.Add(name="residual")([tokens, attended])
    x = L.LayerNormalization(name="norm")(x)
    x = L.Dense(16, activation="gelu", name="mlp")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="conv_patches_attention_block")


def cnn_dense_softmax_head() -> keras.Model:
    """A classifier that forgot Flatten: Dense(10, softmax) straight on the conv map is the model output,
    (None, 14, 14, 10) instead of (None, 10)."""
    seeded()
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="conv")(image)
    return keras.Model(image, L.Dense(10, activation="softmax", name="head")(x), name="cnn_dense_softmax_head")


def conv1d_pool_dense_output() -> keras.Model:
    """A 1D signal classifier with no Flatten: the Dense output keeps the 15 pooled steps."""
    seeded()
    signal = keras.Input((32, 2), name="signal")
    x = L.Conv1D(8, 3, activation="relu", name="conv")(signal)
    x = L.MaxPooling1D(2, name="pool")(x)
    return keras.Model(signal, L.Dense(3, activation="softmax", name="head")(x), name="conv1d_pool_dense_output")


def pointwise_dense_two_heads() -> keras.Model:
    """A pointwise Dense on the conv map feeds a pooled class head and a box head that forgot pooling: one
    path reaches an output still at rank 4, so the pointwise Dense is reported, with that output."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="conv")(image)
    features = L.Dense(8, activation="relu", name="features")(x)
    pooled = L.GlobalAveragePooling2D(name="gap")(features)
    classes = L.Dense(3, activation="softmax", name="classes")(pooled)
    boxes = L.Dense(4, name="boxes")(features)
    return keras.Model(image, [classes, boxes], name="pointwise_dense_two_heads")


def convnext_like_block() -> keras.Model:
    """ConvNeXt in miniature: a patchify stem, a block (depthwise conv, LayerNormalization, Dense pointwise
    expansion with gelu, Dense pointwise projection, residual Add), a LayerNormalization + strided-conv
    down-sampling feeding the next block and its skip, then global pooling and the head. Healthy: the Dense
    layers are pointwise projections reduced by the pooling, the LayerNormalizations are non-linear, the
    down-sampling conv feeds a residual stream and a depthwise conv."""
    seeded()
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 2, strides=2, name="stem")(image)
    x = L.LayerNormalization(epsilon=1e-6, name="stem_norm")(x)
    for i, channels in enumerate((8, 16)):
        if i:
            x = L.LayerNormalization(epsilon=1e-6, name=f"down{i}_norm")(x)
            x = L.Conv2D(channels, 2, strides=2, name=f"down{i}")(x)
        y = L.Conv2D(channels, 3, padding="same", groups=channels, name=f"block{i}_dwconv")(x)
        y = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm")(y)
        y = L.Dense(4 * channels, name=f"block{i}_pw1")(y)
        y = L.Activation("gelu", name=f"block{i}_gelu")(y)
        y = L.Dense(channels, name=f"block{i}_pw2")(y)
        x = L.Add(name=f"block{i}_residual")([x, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="convnext_like_block")


def mlp_mixer_like() -> keras.Model:
    """MLP-Mixer in miniature: Conv2D patches reshaped to 16 tokens, a token-mixing MLP (Dense across the
    tokens, between two Permutes) and a channel-mixing MLP (Dense on the channels), each behind a
    LayerNormalization and with a residual Add, then GlobalAveragePooling1D and the head."""
    seeded()
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 4, strides=4, name="patches")(image)
    x = L.Reshape((16, 8), name="tokens")(x)
    y = L.LayerNormalization(name="token_norm")(x)
    y = L.Permute((2, 1), name="to_channels_first")(y)
    y = L.Dense(16, activation="gelu", name="token_mlp1")(y)
    y = L.Dense(16, name="token_mlp2")(y)
    y = L.Permute((2, 1), name="to_tokens_first")(y)
    x = L.Add(name="token_residual")([x, y])
    y = L.LayerNormalization(name="channel_norm")(x)
    y = L.Dense(16, activation="gelu", name="channel_mlp1")(y)
    y = L.Dense(8, name="channel_mlp2")(y)
    x = L.Add(name="channel_residual")([x, y])
    x = L.LayerNormalization(name="head_norm")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="mlp_mixer_like")


def conv_layernorm_dense() -> keras.Model:
    """A linear Conv2D, LayerNormalization, then a Dense pointwise projection with relu and global pooling:
    the LayerNormalization divides by each sample's statistics, a non-linearity; the Dense is reduced."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, name="conv")(image)
    x = L.LayerNormalization(name="norm")(x)
    x = L.Dense(16, activation="relu", name="pointwise")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="conv_layernorm_dense")


# -- image-without-conv --------------------------------------------------------------------------------


def mlp_on_rgb_image() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            L.Flatten(name="flatten"),
            L.Dense(8, activation="relu", name="hidden"),
            L.Dense(2, activation="softmax", name="out"),
        ],
        name="mlp_on_rgb_image",
    )


def functional_rescaled_image_mlp() -> keras.Model:
    seeded()
    image = keras.Input((12, 12, 1), name="image")
    x = L.Rescaling(1 / 255, name="scale")(image)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="out")(x), name="functional_rescaled_image_mlp")


def small_cnn() -> keras.Model:
    seeded()
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="out")(x), name="small_cnn")


def fashion_mnist_tutorial_mlp() -> keras.Model:
    """The Keras beginner tutorial: a (28, 28) grey image flattened into Dense; rank 3 is ambiguous
    (it could be a sequence), so image-without-conv leaves it alone."""
    seeded()
    return keras.Sequential(
        [keras.Input((28, 28)), L.Flatten(name="flatten"), L.Dense(16, activation="relu", name="hidden"), L.Dense(10)],
        name="fashion_mnist_tutorial_mlp",
    )


# -- conv-after-flatten --------------------------------------------------------------------------------


def flatten_reshape_conv() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Flatten(name="flatten")(image)
    x = L.Reshape((8, 8, 1), name="reshape")(x)
    x = L.Conv2D(2, 3, activation="relu", name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="flatten_reshape_conv")


def dense_reshape_pool() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((16,)),
            L.Dense(64, activation="relu", name="dense"),
            L.Reshape((8, 8, 1), name="reshape"),
            L.MaxPooling2D(name="pool"),
            L.Flatten(name="flatten"),
            L.Dense(2, name="out"),
        ],
        name="dense_reshape_pool",
    )


def generator_upsampling() -> keras.Model:
    """A DCGAN-style generator: Dense -> Reshape -> UpSampling2D -> Conv2D builds maps on purpose."""
    seeded()
    noise = keras.Input((8,), name="noise")
    x = L.Dense(4 * 4 * 8, activation="relu", name="project")(noise)
    x = L.Reshape((4, 4, 8), name="reshape")(x)
    x = L.UpSampling2D(name="up")(x)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = L.Conv2DTranspose(1, 3, strides=2, padding="same", activation="tanh", name="image")(x)
    return keras.Model(noise, x, name="generator_upsampling")


# -- parameter-explosion -------------------------------------------------------------------------------


def cnn_huge_flatten_dense() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(16, 3, activation="relu", name="conv"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="fc"),
            L.Dense(10, activation="softmax", name="out"),
        ],
        name="cnn_huge_flatten_dense",
    )


def functional_flatten_dropout_big_dense() -> keras.Model:
    seeded()
    image = keras.Input((64, 64, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.3, name="drop")(x)
    x = L.Dense(128, activation="relu", name="big")(x)
    return keras.Model(
        image, L.Dense(2, activation="softmax", name="out")(x), name="functional_flatten_dropout_big_dense"
    )


def cnn_huge_global_pool() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(16, 3, activation="relu", name="conv"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(64, activation="relu", name="fc"),
            L.Dense(10, activation="softmax", name="out"),
        ],
        name="cnn_huge_global_pool",
    )


def tf_cifar_tutorial_cnn() -> keras.Model:
    """The TensorFlow CNN tutorial: its Dense(64) holds 54% of 122k parameters, under min_parameters."""
    seeded()
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(32, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(64, 3, activation="relu", name="conv2"),
            L.MaxPooling2D(name="pool2"),
            L.Conv2D(64, 3, activation="relu", name="conv3"),
            L.Flatten(name="flatten"),
            L.Dense(64, activation="relu", name="fc"),
            L.Dense(10, name="logits"),
        ],
        name="tf_cifar_tutorial_cnn",
    )


# -- missing-nonlinearity ------------------------------------------------------------------------------


def mlp_linear_then_dense() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(8, name="lin"),
            L.Dropout(0.1, name="drop"),
            L.Dense(4, activation="relu", name="next"),
            L.Dense(2, name="out"),
        ],
        name="mlp_linear_then_dense",
    )


def cnn_conv_bn_conv() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, name="conv_a")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(4, 3, activation="relu", name="conv_b")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_conv_bn_conv")


def nested_linear_encoder() -> keras.Model:
    seeded()
    inner = keras.Input((6,), name="inner")
    encoder = keras.Model(inner, L.Dense(3, name="code")(inner), name="encoder")
    x = keras.Input((6,), name="x")
    h = encoder(x)
    h = L.Dense(4, activation="relu", name="decoder")(h)
    return keras.Model(x, L.Dense(1, name="out")(h), name="nested_linear_encoder")


def mlp_relu() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(16, activation="relu", name="hidden1"),
            L.Dropout(0.2, name="drop"),
            L.Dense(8, activation="relu", name="hidden2"),
            L.Dense(1, activation="sigmoid", name="out"),
        ],
        name="mlp_relu",
    )


def pointwise_linear_bottleneck() -> keras.Model:
    """MobileNetV2's linear bottleneck: a linear 1x1 projection, BN, then a 1x1 expansion with relu6."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(image)
    x = L.Conv2D(4, 1, use_bias=False, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    x = L.Conv2D(16, 1, use_bias=False, name="expand")(x)
    x = L.ReLU(6.0, name="expand_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, activation="softmax", name="out")(x), name="pointwise_linear_bottleneck")


def conv_batchnorm_dense() -> keras.Model:
    """conv_layernorm_dense's twin with BatchNormalization, an affine map at inference: the linear Conv2D
    and the Dense pointwise projection are one linear map."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, name="conv")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Dense(16, activation="relu", name="pointwise")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="head")(x), name="conv_batchnorm_dense")


def mlp_linear_trunk_two_heads() -> keras.Model:
    """A linear trunk fanning out to two heads with no residual merge: each head and the trunk are one
    linear map, so the fan-out alone does not excuse the missing activation."""
    seeded()
    x = keras.Input((6,), name="x")
    trunk = L.Dense(8, name="trunk")(x)
    first = L.Dense(2, activation="softmax", name="head_a")(trunk)
    second = L.Dense(1, name="head_b")(trunk)
    return keras.Model(x, [first, second], name="mlp_linear_trunk_two_heads")


def depthwise_bn_depthwise() -> keras.Model:
    """Two depthwise convs in a row with only BatchNormalization between: one depthwise conv with a larger
    kernel; not a separable (depthwise + channel-mixing) pair."""
    seeded()
    image = keras.Input((12, 12, 4), name="image")
    x = L.Conv2D(8, 1, activation="relu", name="stem")(image)
    x = L.DepthwiseConv2D(3, name="dw_a")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, activation="relu", name="dw_b")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, activation="softmax", name="out")(x), name="depthwise_bn_depthwise")


def preactivation_residual_stream() -> keras.Model:
    """A linear strided conv whose output is the residual stream: it feeds a 3x3 conv branch and, through
    the skip, the residual Add (the ConvNeXt down-sampling pattern, with ordinary convs)."""
    seeded()
    image = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="stem")(image)
    x = L.Conv2D(16, 2, strides=2, name="down")(x)
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="branch_a")(x)
    y = L.Conv2D(16, 3, padding="same", name="branch_b")(y)
    x = L.Add(name="residual")([x, y])
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="out")(x), name="preactivation_residual_stream")


def separable_pair() -> keras.Model:
    """A separable convolution spelled as two layers: a linear DepthwiseConv2D then a pointwise Conv2D, as
    SeparableConv2D does inside with no activation between its steps."""
    seeded()
    image = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="stem")(image)
    x = L.DepthwiseConv2D(3, name="depthwise")(x)
    x = L.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(3, activation="softmax", name="out")(x), name="separable_pair")


# -- redundant-activation ------------------------------------------------------------------------------


def mlp_relu_then_activation() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="hidden"),
            L.Activation("relu", name="act"),
            L.Dense(2, name="out"),
        ],
        name="mlp_relu_then_activation",
    )


def cnn_fused_relu_then_relu_layer() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_fused_relu_then_relu_layer")


def mlp_hidden_softmax() -> keras.Model:
    seeded()
    return keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="softmax", name="mix"), L.Dense(2, name="out")],
        name="mlp_hidden_softmax",
    )


def dense_bn_activation_softmax_layer() -> keras.Model:
    seeded()
    x = keras.Input((4,), name="x")
    h = L.Dense(8, use_bias=False, name="dense")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Activation("relu", name="act")(h)
    h = L.Dense(3, name="logits")(h)
    return keras.Model(x, L.Softmax(name="probs")(h), name="dense_bn_activation_softmax_layer")


# -- saturating-deep-stack -----------------------------------------------------------------------------


def deep_tanh_mlp(depth: int = 6) -> keras.Model:
    seeded()
    layers = [keras.Input((4,))]
    layers += [L.Dense(8, activation="tanh", name=f"h{i}") for i in range(1, depth + 1)]
    return keras.Sequential([*layers, L.Dense(1, name="out")], name=f"tanh_mlp_{depth}")


def deep_sigmoid_cnn() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = image
    for i in range(1, 6):
        x = L.Conv2D(4, 3, padding="same", activation="sigmoid", name=f"conv{i}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="deep_sigmoid_cnn")


def shallow_tanh_mlp() -> keras.Model:
    return deep_tanh_mlp(4)


# -- constant-init -------------------------------------------------------------------------------------


def mlp_ones_kernel() -> keras.Model:
    seeded()
    return keras.Sequential(
        [keras.Input((4,)), L.Dense(4, activation="relu", kernel_initializer="ones", name="const"), L.Dense(2)],
        name="mlp_ones_kernel",
    )


def cnn_constant_kernel() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.Constant(0.1), name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_constant_kernel")


def nested_zeros_kernel() -> keras.Model:
    seeded()
    inner = keras.Input((4,), name="inner")
    block = keras.Model(inner, L.Dense(3, kernel_initializer="zeros", name="zero")(inner), name="block")
    x = keras.Input((4,), name="x")
    return keras.Model(x, L.Dense(1, name="out")(block(x)), name="nested_zeros_kernel")


def logistic_regression_zeros() -> keras.Model:
    """One output unit initialised to zeros: standard for logistic regression, no symmetry to break."""
    seeded()
    return keras.Sequential(
        [keras.Input((4,)), L.Dense(1, activation="sigmoid", kernel_initializer="zeros", name="logit")],
        name="logistic_regression_zeros",
    )


# -- bias-before-batchnorm -----------------------------------------------------------------------------


def cnn_conv_bias_bn() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, name="conv")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_conv_bias_bn")


def mlp_dense_bias_bn() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, name="dense"),
            L.BatchNormalization(name="bn"),
            L.Activation("relu", name="act"),
            L.Dense(2, name="out"),
        ],
        name="mlp_dense_bias_bn",
    )


def cnn_conv_no_bias_bn() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, use_bias=False, name="conv")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Dense(4, activation="relu", name="relu_dense_bn_input")(L.GlobalAveragePooling2D(name="gap")(x))
    x = L.BatchNormalization(name="bn2")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_conv_no_bias_bn")


# -- dropout-placement ---------------------------------------------------------------------------------


def mlp_heavy_dropout() -> keras.Model:
    seeded()
    return keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="relu", name="hidden"), L.Dropout(0.8, name="drop"), L.Dense(2)],
        name="mlp_heavy_dropout",
    )


def cnn_dropout_last() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(2, activation="softmax", name="out")(x)
    return keras.Model(image, L.Dropout(0.3, name="last_drop")(x), name="cnn_dropout_last")


def mlp_dropout_before_bn() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="hidden"),
            L.Dropout(0.3, name="drop"),
            L.BatchNormalization(name="bn"),
            L.Dense(2, name="out"),
        ],
        name="mlp_dropout_before_bn",
    )


def mlp_classic_dropout() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, activation="relu", name="hidden"),
            L.BatchNormalization(name="bn"),
            L.Dropout(0.5, name="drop"),
            L.Dense(2, activation="softmax", name="out"),
        ],
        name="mlp_classic_dropout",
    )


# -- feature-map-too-small -----------------------------------------------------------------------------


def cnn_conv_on_one_pixel() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(4, 3, activation="relu", name="conv"),
            L.MaxPooling2D(3, name="pool1"),
            L.MaxPooling2D(2, name="pool2"),
            L.Conv2D(4, 3, padding="same", activation="relu", name="late_conv"),
            L.Flatten(name="flatten"),
            L.Dense(2, name="out"),
        ],
        name="cnn_conv_on_one_pixel",
    )


def functional_pool_on_one_pixel() -> keras.Model:
    seeded()
    image = keras.Input((4, 4, 1), name="image")
    x = L.Conv2D(2, 3, padding="same", activation="relu", name="conv")(image)
    x = L.MaxPooling2D(4, name="pool_a")(x)
    x = L.MaxPooling2D(2, padding="same", name="pool_b")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="functional_pool_on_one_pixel")


def vgg_style_end_on_two_pixels() -> keras.Model:
    """3x3 kernels on a 2x2 map (VGG16 at 32x32): every tap still sees data, only strict mode fires."""
    seeded()
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(image)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="vgg_style_end_on_two_pixels")


# -- cnn-design-smell ----------------------------------------------------------------------------------


def cnn_growing_kernels() -> keras.Model:
    seeded()
    image = keras.Input((32, 32, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv3")(image)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(16, 5, padding="same", activation="relu", name="conv5")(x)
    x = L.MaxPooling2D(name="pool2")(x)
    x = L.Conv2D(32, 7, padding="same", activation="relu", name="conv7")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, L.Dense(2, name="out")(x), name="cnn_growing_kernels")


def cnn_shrinking_filters() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            L.Conv2D(32, 3, padding="same", activation="relu", name="wide"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(16, 3, padding="same", activation="relu", name="narrow"),
            L.MaxPooling2D(name="pool2"),
            L.Conv2D(8, 3, padding="same", activation="relu", name="narrower"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(2, name="out"),
        ],
        name="cnn_shrinking_filters",
    )


def cnn_no_downsampling() -> keras.Model:
    seeded()
    layers = [keras.Input((12, 12, 1))]
    layers += [L.Conv2D(4, 3, padding="same", activation="relu", name=f"conv{i}") for i in range(1, 7)]
    return keras.Sequential([*layers, L.GlobalAveragePooling2D(name="gap"), L.Dense(2, name="out")], name="cnn_flat")


def tutorial_cnn() -> keras.Model:
    seeded()
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(16, 3, activation="relu", name="conv1"),
            L.MaxPooling2D(name="pool1"),
            L.Conv2D(32, 3, activation="relu", name="conv2"),
            L.MaxPooling2D(name="pool2"),
            L.Conv2D(32, 3, activation="relu", name="conv3"),
            L.Flatten(name="flatten"),
            L.Dropout(0.5, name="drop"),
            L.Dense(10, activation="softmax", name="out"),
        ],
        name="tutorial_cnn",
    )


# -- runtime: non-finite -------------------------------------------------------------------------------


def mlp_nan_kernel() -> keras.Model:
    model = mlp_relu()
    layer = model.get_layer("hidden2")
    kernel, bias = layer.get_weights()
    kernel[0, 0] = np.nan
    layer.set_weights([kernel, bias])
    return model


def cnn_overflow() -> keras.Model:
    model = cnn_global_pool_then_dense()
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    large = np.random.default_rng(0).uniform(2e38, 3e38, kernel.shape).astype("float32")
    conv.set_weights([large, bias])  # finite weights, an output beyond float32
    return model


# -- runtime: dead-units -------------------------------------------------------------------------------


def mlp_dead_relu() -> keras.Model:
    model = mlp_relu()
    scale_weights(model.get_layer("hidden1"), bias=-100.0)
    return model


def cnn_dead_conv() -> keras.Model:
    model = small_cnn()
    scale_weights(model.get_layer("conv"), bias=-100.0)
    return model


def _with_biases(layer: keras.layers.Layer, dead: int) -> None:
    """The first `dead` units of a layer get a bias of -100 (never active), the others +100 (always)."""
    kernel, bias = layer.get_weights()
    bias[:] = 100.0
    bias[:dead] = -100.0
    layer.set_weights([kernel, bias])


def squeeze_excite(dead: int, name: str) -> keras.Model:
    """A squeeze-and-excite block (global pooling, a ReLU bottleneck, a sigmoid gate) with `dead` of its 10
    bottleneck units dead."""
    seeded()
    image = keras.Input((8, 8, 16), name="image")
    squeezed = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(image)
    bottleneck = L.Conv2D(10, 1, activation="relu", name="reduce")(squeezed)
    gate = L.Conv2D(16, 1, activation="sigmoid", name="expand")(bottleneck)
    model = keras.Model(image, L.Multiply(name="excite")([image, gate]), name=name)
    _with_biases(model.get_layer("reduce"), dead)
    return model


def squeeze_excite_chance() -> keras.Model:
    """6 of 10 dead after global pooling: about what a fresh squeeze-and-excite block shows by chance."""
    return squeeze_excite(6, "squeeze_excite_chance")


def squeeze_excite_dead() -> keras.Model:
    return squeeze_excite(10, "squeeze_excite_dead")


def mlp_six_of_ten_dead() -> keras.Model:
    """The same 6 of 10 dead units where every example gives its own value: that stays a finding."""
    seeded()
    model = keras.Sequential(
        [keras.Input((6,)), L.Dense(10, activation="relu", name="hidden"), L.Dense(1, name="out")],
        name="mlp_six_of_ten_dead",
    )
    _with_biases(model.get_layer("hidden"), 6)
    return model


def mlp_dead_relu_layer() -> keras.Model:
    seeded()
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, name="pre"), L.ReLU(name="relu"), L.Dense(2, name="out")],
        name="mlp_dead_relu_layer",
    )
    scale_weights(model.get_layer("pre"), bias=-100.0)
    return model


def mlp_leaky_negative_bias() -> keras.Model:
    """LeakyReLU keeps a gradient below zero: a negative bias does not kill its units."""
    seeded()
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, name="pre"), L.LeakyReLU(name="leaky"), L.Dense(2, name="out")],
        name="mlp_leaky_negative_bias",
    )
    scale_weights(model.get_layer("pre"), bias=-100.0)
    return model


# -- runtime: saturated-units --------------------------------------------------------------------------


def mlp_saturated_tanh() -> keras.Model:
    seeded()
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="tanh", name="sat"), L.Dense(2, name="out")],
        name="mlp_saturated_tanh",
    )
    scale_weights(model.get_layer("sat"), kernel=200.0)
    return model


def cnn_saturated_sigmoid_gate() -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, activation="sigmoid", name="gate")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, L.Dense(2, name="out")(x), name="cnn_saturated_sigmoid_gate")
    scale_weights(model.get_layer("gate"), bias=20.0)
    return model


def _normalized_saturated_tanh(trained: bool, name: str) -> keras.Model:
    """Dense -> BatchNormalization -> a tanh layer driven into saturation."""
    seeded()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            L.Dense(8, name="pre"),
            L.BatchNormalization(name="bn"),
            L.Dense(8, activation="tanh", name="sat"),
            L.Dense(2, name="out"),
        ],
        name=name,
    )
    scale_weights(model.get_layer("sat"), kernel=200.0)
    if trained:  # moving statistics that training moved: the layer normalises in inference
        gamma, beta, mean, variance = model.get_layer("bn").get_weights()
        model.get_layer("bn").set_weights([gamma, beta, mean + 0.01, variance * 1.5])
    return model


def bn_trained_saturated_tanh() -> keras.Model:
    return _normalized_saturated_tanh(True, "bn_trained_saturated_tanh")


def bn_untrained_saturated_tanh() -> keras.Model:
    """The same after weights=None: BatchNormalization in inference passes its input on unnormalised, so the
    saturation says nothing about training (a deep fresh EfficientNetV2's squeeze-and-excite gates)."""
    return _normalized_saturated_tanh(False, "bn_untrained_saturated_tanh")


def mlp_tanh_confident_sigmoid_output() -> keras.Model:
    """Healthy tanh hidden layer; the sigmoid output is saturated, which an output is allowed to be."""
    seeded()
    model = keras.Sequential(
        [keras.Input((4,)), L.Dense(8, activation="tanh", name="hidden"), L.Dense(1, activation="sigmoid", name="out")],
        name="mlp_tanh_confident_sigmoid_output",
    )
    scale_weights(model.get_layer("out"), bias=30.0)
    return model


# -- runtime: exploding / vanishing activations --------------------------------------------------------


def mlp_scaled(kernel: float, name: str) -> keras.Model:
    seeded()
    model = keras.Sequential(
        [
            keras.Input((8,)),
            *[L.Dense(16, activation="relu", name=f"d{i}") for i in range(1, 5)],
            L.Dense(2, name="out"),
        ],
        name=name,
    )
    for i in range(1, 5):
        scale_weights(model.get_layer(f"d{i}"), kernel=kernel)
    return model


def cnn_scaled(kernel: float, name: str) -> keras.Model:
    seeded()
    image = keras.Input((8, 8, 1), name="image")
    x = image
    for i in range(1, 4):
        x = L.Conv2D(8, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, L.Dense(2, name="out")(x), name=name)
    for i in range(1, 4):
        scale_weights(model.get_layer(f"conv{i}"), kernel=kernel)
    return model


def mlp_exploding() -> keras.Model:
    return mlp_scaled(40.0, "mlp_exploding")


def cnn_exploding() -> keras.Model:
    return cnn_scaled(100.0, "cnn_exploding")


def mlp_vanishing() -> keras.Model:
    return mlp_scaled(0.02, "mlp_vanishing")


def cnn_vanishing() -> keras.Model:
    return cnn_scaled(0.02, "cnn_vanishing")


def mlp_deep_default() -> keras.Model:
    return mlp_scaled(1.0, "mlp_deep_default")


# -- runtime: constant-output --------------------------------------------------------------------------


def mlp_zero_last_kernel() -> keras.Model:
    model = mlp_relu()
    scale_weights(model.get_layer("out"), kernel=0.0, bias=0.3)
    return model


def cnn_dead_before_head() -> keras.Model:
    return cnn_dead_conv()


# -- runtime: unscaled-input ---------------------------------------------------------------------------


def raw_pixels(model: keras.Model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    spec = model.inputs[0]
    shape = (6, *spec.shape[1:])
    return {spec.name: rng.integers(0, 256, size=shape).astype("float32")}


def raw_features(model: keras.Model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    spec = model.inputs[0]
    return {spec.name: rng.normal(1000.0, 300.0, size=(6, *spec.shape[1:])).astype("float32")}


def scaled_features(model: keras.Model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    spec = model.inputs[0]
    return {spec.name: rng.normal(0.0, 1.0, size=(6, *spec.shape[1:])).astype("float32")}


def one_nan_value(model: keras.Model) -> dict[str, np.ndarray]:
    """Scaled inputs with a single NaN: the ReLU after the first layer turns it into 0 on this TensorFlow."""
    arrays = scaled_features(model)
    next(iter(arrays.values())).flat[5] = np.nan
    return arrays


def all_nan(model: keras.Model) -> dict[str, np.ndarray]:
    return {name: np.full_like(a, np.nan) for name, a in scaled_features(model).items()}


# -- runtime: dead-weights -----------------------------------------------------------------------------


def mlp_pruned(fraction: float, name: str) -> keras.Model:
    model = mlp_relu()
    layer = model.get_layer("hidden1")
    kernel, bias = layer.get_weights()
    flat = kernel.ravel()
    flat[: round(fraction * flat.size)] = 0.0
    layer.set_weights([flat.reshape(kernel.shape), bias])
    return keras.Model(model.inputs, model.outputs, name=name)


def mlp_pruned_97() -> keras.Model:
    return mlp_pruned(0.97, "mlp_pruned_97")


def mlp_pruned_50() -> keras.Model:
    return mlp_pruned(0.5, "mlp_pruned_50")


def cnn_tiny_kernel() -> keras.Model:
    model = small_cnn()
    scale_weights(model.get_layer("conv"), kernel=1e-9)
    return model


# -- the table -----------------------------------------------------------------------------------------

CCE: dict[str, object] = {"loss": "categorical_crossentropy"}

CASES: tuple[Case, ...] = (
    # static
    Case("softmax-single-unit", mlp_softmax_one_unit, True, ("prob",), "axis of size 1"),
    Case("softmax-single-unit", cnn_softmax_layer_one_unit, True, ("softmax",), "'softmax'"),
    Case("softmax-single-unit", mlp_sigmoid_one_unit, False),
    Case("softmax-single-unit", cnn_global_pool_then_dense, False),
    Case("output-loss-mismatch", mlp_sigmoid_three, True, ("out",), "ends in sigmoid", compile=CCE),
    Case(
        "output-loss-mismatch",
        cnn_logits,
        True,
        ("logits",),
        "from_logits=True",
        compile={"loss": keras.losses.CategoricalCrossentropy()},
    ),
    Case(
        "output-loss-mismatch",
        nested_softmax_head,
        True,
        ("head/probs",),
        "softmax over 2 unit(s)",
        compile={"loss": keras.losses.BinaryCrossentropy(from_logits=True)},
    ),
    Case(
        "output-loss-mismatch",
        cnn_logits,
        False,
        compile={"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
    ),
    Case("output-loss-mismatch", mlp_sigmoid_one_unit, False, compile={"loss": "binary_crossentropy"}),
    Case("output-loss-mismatch", cnn_global_pool_then_dense, False, compile=CCE),
    Case("dense-on-spatial", cnn_dense_on_conv, True, ("head",), "expected rank 2"),
    Case("dense-on-spatial", sequential_dense_after_pool, False),
    Case("dense-on-spatial", nested_conv_block_then_dense, True, ("head",), "Conv2D 'block/conv'"),
    Case("dense-on-spatial", sequence_dense_per_step, False),
    Case("dense-on-spatial", cnn_global_pool_then_dense, False),
    Case("dense-on-spatial", sequential_conv1d_pool_then_dense, True, ("hidden",), "MaxPooling1D 'pool'"),
    Case("dense-on-spatial", functional_conv2d_reshape_dense, True, ("head",), "received rank 3"),
    Case("dense-on-spatial", nested_conv1d_block_then_dense, True, ("head",), "Conv1D 'block/conv'"),
    Case("dense-on-spatial", embedding_dense_per_token, False),
    Case("dense-on-spatial", lstm_sequences_then_dense, False),
    Case("dense-on-spatial", cnn_gru_sequence_tagger, False),
    Case("dense-on-spatial", conv1d_global_pool_then_dense, False),
    Case("dense-on-spatial", conv1d_pool_flatten_then_dense, False),
    Case("dense-on-spatial", conv_patches_attention_block, False),
    Case("dense-on-spatial", cnn_dense_softmax_head, True, ("head",), "reaches output 'head' as (None, 14, 14, 10)"),
    Case("dense-on-spatial", conv1d_pool_dense_output, True, ("head",), "MaxPooling1D 'pool'"),
    Case("dense-on-spatial", pointwise_dense_two_heads, True, ("features",), "reaches output 'boxes'"),
    Case("dense-on-spatial", convnext_like_block, False),
    Case("dense-on-spatial", mlp_mixer_like, False),
    Case("dense-on-spatial", conv_layernorm_dense, False),
    Case("image-without-conv", mlp_on_rgb_image, True, ("flatten",), "expected a convolution"),
    Case("image-without-conv", functional_rescaled_image_mlp, True, ("flat",), "Image input 'image'"),
    Case("image-without-conv", small_cnn, False),
    Case("image-without-conv", fashion_mnist_tutorial_mlp, False),
    Case("conv-after-flatten", flatten_reshape_conv, True, ("conv", "flatten"), "fabricated"),
    Case("conv-after-flatten", dense_reshape_pool, True, ("pool", "dense"), "MaxPooling2D 'pool'"),
    Case("conv-after-flatten", generator_upsampling, False),
    Case("conv-after-flatten", small_cnn, False),
    Case("parameter-explosion", cnn_huge_flatten_dense, True, ("fc",), "Dense 'fc' after Flatten 'flatten'"),
    Case("parameter-explosion", functional_flatten_dropout_big_dense, True, ("big",), "expected at most 50%"),
    Case("parameter-explosion", cnn_huge_global_pool, False),
    Case("parameter-explosion", tf_cifar_tutorial_cnn, False),
    Case("missing-nonlinearity", mlp_linear_then_dense, True, ("lin", "next"), "one linear map"),
    Case("missing-nonlinearity", cnn_conv_bn_conv, True, ("conv_a", "conv_b"), "Conv2D 'conv_a'"),
    Case("missing-nonlinearity", nested_linear_encoder, True, ("encoder/code", "decoder"), "'encoder/code'"),
    Case("missing-nonlinearity", mlp_relu, False),
    Case("missing-nonlinearity", pointwise_linear_bottleneck, False),
    Case("missing-nonlinearity", conv_batchnorm_dense, True, ("conv", "pointwise"), "Dense 'pointwise'"),
    Case(
        "missing-nonlinearity",
        mlp_linear_trunk_two_heads,
        True,
        ("trunk", "head_a"),
        "'trunk'",
        also=(("trunk", "head_b"),),
    ),
    Case("missing-nonlinearity", depthwise_bn_depthwise, True, ("dw_a", "dw_b"), "DepthwiseConv2D 'dw_a'"),
    Case("missing-nonlinearity", conv_layernorm_dense, False),
    Case("missing-nonlinearity", convnext_like_block, False),
    Case("missing-nonlinearity", mlp_mixer_like, False),
    Case("missing-nonlinearity", preactivation_residual_stream, False),
    Case("missing-nonlinearity", separable_pair, False),
    Case("redundant-activation", mlp_relu_then_activation, True, ("hidden", "act"), "received two in a row"),
    Case("redundant-activation", cnn_fused_relu_then_relu_layer, True, ("conv", "relu"), "ReLU 'relu'"),
    Case("redundant-activation", mlp_hidden_softmax, True, ("mix",), "softmax in a hidden layer"),
    Case("redundant-activation", dense_bn_activation_softmax_layer, False),
    Case("redundant-activation", mlp_relu, False),
    Case(
        "saturating-deep-stack",
        deep_tanh_mlp,
        True,
        ("h1", "h2", "h3", "h4", "h5", "h6"),
        "6 hidden layers apply tanh",
    ),
    Case("saturating-deep-stack", deep_sigmoid_cnn, True, ("conv1", "conv2", "conv3", "conv4", "conv5"), "sigmoid"),
    Case("saturating-deep-stack", shallow_tanh_mlp, False),
    Case("constant-init", mlp_ones_kernel, True, ("const",), "initializer Ones"),
    Case("constant-init", cnn_constant_kernel, True, ("conv",), "the constant 0.1"),
    Case("constant-init", nested_zeros_kernel, True, ("block/zero",), "3 units"),
    Case("constant-init", logistic_regression_zeros, False),
    Case("constant-init", mlp_relu, False),
    Case("bias-before-batchnorm", cnn_conv_bias_bn, True, ("conv", "bn"), "use_bias=True"),
    Case("bias-before-batchnorm", mlp_dense_bias_bn, True, ("dense", "bn"), "Dense 'dense'"),
    Case("bias-before-batchnorm", cnn_conv_no_bias_bn, False),
    Case("dropout-placement", mlp_heavy_dropout, True, ("drop",), "expected rate <= 0.5, received 0.8"),
    Case("dropout-placement", cnn_dropout_last, True, ("last_drop",), "output layer"),
    Case("dropout-placement", mlp_dropout_before_bn, True, ("drop", "bn"), "variance shift"),
    Case("dropout-placement", mlp_classic_dropout, False),
    Case("dropout-placement", tutorial_cnn, False),
    Case("feature-map-too-small", cnn_conv_on_one_pixel, True, ("late_conv",), "over an input map of (1, 1)"),
    Case("feature-map-too-small", functional_pool_on_one_pixel, True, ("pool_b",), "pool window"),
    Case("feature-map-too-small", vgg_style_end_on_two_pixels, False),
    Case("feature-map-too-small", tutorial_cnn, False),
    Case("cnn-design-smell", cnn_growing_kernels, True, ("conv3", "conv5", "conv7"), "grow with depth"),
    Case("cnn-design-smell", cnn_shrinking_filters, True, ("wide", "narrow"), "Filters shrink"),
    Case("cnn-design-smell", cnn_no_downsampling, True, ("conv1", "conv6"), "full resolution"),
    Case("cnn-design-smell", tutorial_cnn, False),
    Case("cnn-design-smell", small_cnn, False),
    # runtime
    Case("non-finite", mlp_nan_kernel, True, ("hidden2",), "kernel weights"),
    Case("non-finite", cnn_overflow, True, ("conv",), "in its output"),
    Case("non-finite", small_cnn, True, ("image",), "Input 'image' holds non-finite values", inputs=one_nan_value),
    Case("non-finite", small_cnn, True, ("image",), "received 4608 NaN, 0 +Inf and 0 -Inf of 4608", inputs=all_nan),
    Case("non-finite", mlp_relu, False),
    Case("non-finite", small_cnn, False, inputs=scaled_features),
    Case("dead-units", mlp_dead_relu, True, ("hidden1",), "16 of 16 units", also=(("hidden2",),)),
    Case("dead-units", cnn_dead_conv, True, ("conv",), "Conv2D 'conv'", also=(("hidden",),)),
    Case("dead-units", mlp_dead_relu_layer, True, ("relu",), "ReLU 'relu'"),
    Case("dead-units", mlp_relu, False),
    Case("dead-units", squeeze_excite_dead, True, ("reduce",), "expected at most 90% dead (after global pooling"),
    Case("dead-units", squeeze_excite_chance, False),
    Case("dead-units", mlp_six_of_ten_dead, True, ("hidden",), "6 of 10 units"),
    Case("dead-units", mlp_leaky_negative_bias, False),
    Case("saturated-units", mlp_saturated_tanh, True, ("sat",), "Dense 'sat' (tanh)"),
    Case("saturated-units", cnn_saturated_sigmoid_gate, True, ("gate",), "(0.0, 1.0)"),
    Case("saturated-units", mlp_tanh_confident_sigmoid_output, False),
    Case("saturated-units", bn_trained_saturated_tanh, True, ("sat",), "Dense 'sat' (tanh)"),
    Case("saturated-units", bn_untrained_saturated_tanh, False),
    Case("saturated-units", deep_tanh_mlp, False),
    Case("exploding-activations", mlp_exploding, True, ("d4", "out"), "grows from rms"),
    Case("exploding-activations", cnn_exploding, True, ("conv3",), "'conv1'"),
    Case("exploding-activations", mlp_deep_default, False),
    Case("exploding-activations", tutorial_cnn, False),
    Case("vanishing-activations", mlp_vanishing, True, ("d3", "d4"), "shrinks from rms"),
    Case("vanishing-activations", cnn_vanishing, True, ("conv3", "out"), "'conv1'"),
    Case("vanishing-activations", mlp_deep_default, False),
    Case("vanishing-activations", tutorial_cnn, False),
    Case("constant-output", mlp_zero_last_kernel, True, ("out",), "same for all 12 inputs"),
    Case("constant-output", cnn_dead_before_head, True, ("out",), "spread of 0"),
    Case("constant-output", mlp_relu, False),
    Case("constant-output", tutorial_cnn, False),
    Case("unscaled-input", small_cnn, True, ("conv",), "expected a normalised input", inputs=raw_pixels),
    Case("unscaled-input", mlp_relu, True, ("hidden1",), "rms <= 5", inputs=raw_features),
    Case("unscaled-input", small_cnn, False),
    Case("unscaled-input", functional_rescaled_image_mlp, False, inputs=raw_pixels),
    Case("unscaled-input", mlp_relu, False, inputs=scaled_features),
    Case("dead-weights", mlp_pruned_97, True, ("hidden1",), "almost all ~0"),
    Case("dead-weights", cnn_tiny_kernel, True, ("conv",), "0% exactly 0"),
    Case("dead-weights", mlp_pruned_50, False),
    Case("dead-weights", small_cnn, False),
)
