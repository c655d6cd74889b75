"""A corpus of buggy/fixed Keras model pairs in the style of the published "model won't train" benchmarks.

Each pair rebuilds, as a tiny seeded model, a kind of bug reported again and again on Stack Overflow and in
GitHub issues (the sources DeepFD, AutoTrainer, DEFault and UMLAUT draw their benchmarks from); the comment
on each pair names the kind of report. The fixed twin is the accepted answer's fix. Both are audited twice:
with inputs only (static and runtime rules), and with targets (plus gradients and a 5-step probe).

    .venv/bin/python -m tests.diagnosis.training_corpus     # prints the counts per mode and per pair
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from layerscope.service import model_diagnosis
from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.models import ModelInfo
from layerscope.service.domain.training import TrainingOptions
from layerscope.service.models.describe import describe
from layerscope.service.models.registry import LoadedModel

Data = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Pair:
    name: str
    source: str
    """The kind of report the bug comes from."""
    buggy: Callable[[], keras.Model]
    fixed: Callable[[], keras.Model]
    data: Callable[[], Data]
    fixed_data: Callable[[], Data] | None = None
    """When the bug is in the data (labels, scaling), the fixed twin's data; else the same data."""


@dataclass
class Outcome:
    pair: str
    buggy_inputs: list[str] = field(default_factory=list)
    buggy_targets: list[str] = field(default_factory=list)
    fixed_inputs: list[str] = field(default_factory=list)
    fixed_targets: list[str] = field(default_factory=list)


# -- data ------------------------------------------------------------------------------------------------------


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tabular() -> np.ndarray:
    return _rng().normal(size=(64, 8)).astype("float32")


def classes3() -> Data:
    x = tabular()
    return x, ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64"))


def onehot3() -> Data:
    x, y = classes3()
    return x, np.eye(3, dtype="float32")[y]


def binary() -> Data:
    x = tabular()
    return x, (x[:, :1] > 0).astype("float32")


def signed_binary() -> Data:
    x, y = binary()
    return x, 2.0 * y - 1.0


def prices() -> Data:
    x = tabular()
    return x, (250.0 + 40.0 * x[:, :1] + 10.0 * x[:, 1:2]).astype("float32")


def standardized_prices() -> Data:
    x, y = prices()
    return x, ((y - 250.0) / 41.0).astype("float32")


def big_prices() -> Data:
    x = tabular()
    return x, (2e5 + 4e4 * x[:, :1]).astype("float32")


def images() -> Data:
    rng = _rng()
    x = rng.uniform(0, 255, size=(32, 12, 12, 1)).round().astype("float32")
    return x, np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]


def scaled_images() -> Data:
    x, y = images()
    return x / 255.0, y


# -- models ----------------------------------------------------------------------------------------------------


def seeded() -> None:
    keras.utils.set_random_seed(0)


def mlp(
    hidden: tuple[tuple[int, str | None], ...],
    out: tuple[int, str | None],
    loss: object,
    optimizer: object = "adam",
    kernel_initializer: object = "glorot_uniform",
    bias_initializer: object = "zeros",
    dropout: float | None = None,
    last_dropout: bool = False,
) -> keras.Model:
    seeded()
    model = keras.Sequential([keras.Input((8,), name="x")])
    for i, (units, activation) in enumerate(hidden):
        model.add(
            keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=kernel_initializer,
                bias_initializer=bias_initializer,
                name=f"dense{i + 1}",
            )
        )
        if dropout is not None:
            model.add(keras.layers.Dropout(dropout, name=f"dropout{i + 1}"))
    model.add(keras.layers.Dense(out[0], activation=out[1], name="out"))
    if last_dropout:
        model.add(keras.layers.Dropout(0.5, name="dropout_out"))
    model.compile(optimizer=optimizer, loss=loss)
    return model


RELU2 = ((32, "relu"), (32, "relu"))


def cnn(dense_on_maps: bool = False, flatten_to_dense: bool = False) -> keras.Model:
    seeded()
    layers: list[keras.Layer] = [keras.Input((12, 12, 1), name="x")]
    if flatten_to_dense:
        layers += [keras.layers.Flatten(name="flatten"), keras.layers.Dense(32, activation="relu", name="dense1")]
    else:
        layers += [keras.layers.Conv2D(8, 3, activation="relu", name="conv1"), keras.layers.MaxPooling2D(name="pool")]
        if not dense_on_maps:
            layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(3, activation="softmax", name="out"))
    if dense_on_maps:
        layers += [keras.layers.GlobalAveragePooling2D(name="gap")]  # the shapes then fit the labels again
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def _flat_cnn() -> keras.Model:
    return cnn(flatten_to_dense=True)


PAIRS: tuple[Pair, ...] = (
    # SO "Keras regression always predicts the same value": sigmoid output on house prices.
    Pair(
        "sigmoid-on-prices",
        "Stack Overflow regression question",
        lambda: mlp(RELU2, (1, "sigmoid"), "mse"),
        lambda: mlp(RELU2, (1, None), "mse"),
        standardized_prices,
    ),
    # SO "model predicts only zeros": ReLU output on standardized (partly negative) targets.
    Pair(
        "relu-on-signed-targets",
        "Stack Overflow regression question",
        lambda: mlp(RELU2, (1, "relu"), "mae"),
        lambda: mlp(RELU2, (1, None), "mae"),
        standardized_prices,
    ),
    # SO "accuracy stuck at 50%": Dense(1, activation="softmax") for a binary label.
    Pair(
        "softmax-one-unit",
        "Stack Overflow classification question",
        lambda: mlp(RELU2, (1, "softmax"), "binary_crossentropy"),
        lambda: mlp(RELU2, (1, "sigmoid"), "binary_crossentropy"),
        binary,
    ),
    # GitHub keras issue "loss becomes nan after a few batches": SGD with a learning rate of 5.
    Pair(
        "learning-rate-too-high",
        "GitHub issue (NaN loss)",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.SGD(5.0)),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.SGD(0.05)),
        classes3,
    ),
    # SO "CNN does not learn": pixels fed as 0..255 (forgot x / 255).
    Pair(
        "unscaled-pixels",
        "Stack Overflow CNN question",
        cnn,
        cnn,
        images,
        scaled_images,
    ),
    # SO "vanishing gradient in a deep sigmoid network": ten sigmoid layers.
    Pair(
        "deep-sigmoid-stack",
        "Stack Overflow / textbook vanishing-gradient question",
        lambda: mlp(((32, "sigmoid"),) * 10, (1, "sigmoid"), "binary_crossentropy"),
        lambda: mlp(((32, "relu"),) * 10, (1, "sigmoid"), "binary_crossentropy", kernel_initializer="he_normal"),
        binary,
    ),
    # SO "binary classifier stuck": -1/+1 labels (an SVM habit) on a sigmoid with binary cross-entropy.
    Pair(
        "signed-labels-on-sigmoid",
        "Stack Overflow classification question",
        lambda: mlp(RELU2, (1, "sigmoid"), "binary_crossentropy"),
        lambda: mlp(RELU2, (1, "sigmoid"), "binary_crossentropy"),
        signed_binary,
        binary,
    ),
    # SO "multi-class with sigmoid output": sigmoid + categorical cross-entropy.
    Pair(
        "sigmoid-categorical",
        "Stack Overflow classification question",
        lambda: mlp(RELU2, (3, "sigmoid"), "categorical_crossentropy"),
        lambda: mlp(RELU2, (3, "softmax"), "categorical_crossentropy"),
        onehot3,
    ),
    # SO "my network is only linear": Dense layers without activations.
    Pair(
        "no-nonlinearity",
        "Stack Overflow MLP question",
        lambda: mlp(((32, None), (32, None)), (3, "softmax"), "sparse_categorical_crossentropy"),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy"),
        classes3,
    ),
    # SO "loss does not decrease with logits": a linear output under a cross-entropy without from_logits.
    Pair(
        "logits-without-from-logits",
        "Stack Overflow loss question",
        lambda: mlp(RELU2, (3, None), "sparse_categorical_crossentropy"),
        lambda: mlp(RELU2, (3, None), keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
        classes3,
    ),
    # SO "Dense after Conv2D gives wrong output shape": no Flatten before the classifier.
    Pair(
        "dense-on-feature-maps",
        "Stack Overflow CNN question",
        lambda: cnn(dense_on_maps=True),
        cnn,
        scaled_images,
    ),
    # SO "all outputs are zero": ReLU layers initialised with a large negative bias.
    Pair(
        "dead-relu-bias",
        "Stack Overflow dying-ReLU question",
        lambda: mlp(
            RELU2, (3, "softmax"), "sparse_categorical_crossentropy", bias_initializer=keras.initializers.Constant(-5.0)
        ),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy"),
        classes3,
    ),
    # SO "why not initialise weights to zero": every kernel zeros, symmetry never breaks.
    Pair(
        "zero-init",
        "Stack Overflow initialisation question",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", kernel_initializer="zeros"),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy"),
        classes3,
    ),
    # SO "loss not changing at all": a learning rate of 1e-8.
    Pair(
        "learning-rate-too-low",
        "Stack Overflow training question",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-8)),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-3)),
        classes3,
    ),
    # GitHub issue "mse is nan with SGD": unscaled regression targets in the hundreds of thousands.
    Pair(
        "unscaled-targets-sgd",
        "GitHub issue (NaN loss)",
        lambda: mlp(RELU2, (1, None), "mse", keras.optimizers.SGD(0.01)),
        lambda: mlp(RELU2, (1, None), "mse", keras.optimizers.SGD(0.01)),
        big_prices,
        standardized_prices,
    ),
    # SO "softmax output with mean squared error": a regression loss on class probabilities.
    Pair(
        "softmax-with-mse",
        "Stack Overflow loss question",
        lambda: mlp(RELU2, (3, "softmax"), "mse"),
        lambda: mlp(RELU2, (3, "softmax"), "categorical_crossentropy"),
        onehot3,
    ),
    # SO "accuracy does not improve with dropout": Dropout(0.9) after every layer.
    Pair(
        "dropout-0.9",
        "Stack Overflow regularisation question",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", dropout=0.9),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", dropout=0.3),
        classes3,
    ),
    # SO "predictions differ every call": Dropout as the last layer.
    Pair(
        "dropout-last",
        "Stack Overflow regularisation question",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", last_dropout=True),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy"),
        classes3,
    ),
    # GitHub issue "dying ReLU with a high learning rate": Adam at 1.0.
    Pair(
        "adam-lr-1",
        "GitHub issue (dying ReLU)",
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.Adam(1.0)),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy", keras.optimizers.Adam(1e-3)),
        classes3,
    ),
    # SO "softmax in hidden layers": softmax used as a hidden activation.
    Pair(
        "softmax-hidden",
        "Stack Overflow MLP question",
        lambda: mlp(((32, "softmax"), (32, "relu")), (3, "softmax"), "sparse_categorical_crossentropy"),
        lambda: mlp(RELU2, (3, "softmax"), "sparse_categorical_crossentropy"),
        classes3,
    ),
    # SO "binary cross-entropy gives nan with relu output": ReLU output under binary cross-entropy.
    Pair(
        "relu-output-bce",
        "Stack Overflow loss question",
        lambda: mlp(RELU2, (1, "relu"), "binary_crossentropy"),
        lambda: mlp(RELU2, (1, "sigmoid"), "binary_crossentropy"),
        binary,
    ),
    # SO "image classifier with only Dense layers": pixels flattened straight into an MLP.
    Pair(
        "image-mlp",
        "Stack Overflow CNN question",
        _flat_cnn,
        cnn,
        scaled_images,
    ),
)


# -- auditing --------------------------------------------------------------------------------------------------


def loud(findings: list[Finding]) -> list[str]:
    return sorted({f.code for f in findings if f.severity != Severity.INFO})


def audit(model: keras.Model, x: np.ndarray, y: np.ndarray | None, diagnoser: Diagnoser) -> list[str]:
    """The codes at warning or error, as `layerscope audit --inputs x.npy [--targets y.npy]` reports them."""
    description = describe(model, model.get_compile_config())
    engine = CaptureEngine(model, compile_config=description.compile_config)
    info = ModelInfo(model.name, 1, "", description.parameters, tuple(p for p, _ in engine.layers))
    loaded = LoadedModel(info, engine, description)
    training = TrainingOptions({"y": y}) if y is not None else None
    return loud(model_diagnosis.diagnose(loaded, diagnoser, {"x": x}, training).findings)


def audit_pair(pair: Pair, diagnoser: Diagnoser) -> Outcome:
    outcome = Outcome(pair.name)
    x, y = pair.data()
    fx, fy = (pair.fixed_data or pair.data)()
    buggy, fixed = pair.buggy(), pair.fixed()
    outcome.buggy_inputs = audit(buggy, x, None, diagnoser)
    outcome.buggy_targets = audit(buggy, x, y, diagnoser)
    outcome.fixed_inputs = audit(fixed, fx, None, diagnoser)
    outcome.fixed_targets = audit(fixed, fx, fy, diagnoser)
    keras.backend.clear_session()
    return outcome


def audit_corpus() -> list[Outcome]:
    diagnoser = Diagnoser()
    return [audit_pair(pair, diagnoser) for pair in PAIRS]


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {
        "pairs": len(outcomes),
        "buggy_diagnosed_inputs_only": sum(bool(o.buggy_inputs) for o in outcomes),
        "buggy_diagnosed_with_targets": sum(bool(o.buggy_targets) for o in outcomes),
        "fixed_flagged_inputs_only": sum(bool(o.fixed_inputs) for o in outcomes),
        "fixed_flagged_with_targets": sum(bool(o.fixed_targets) for o in outcomes),
    }


def main() -> None:
    outcomes = audit_corpus()
    for o in outcomes:
        print(f"{o.pair:28} buggy: inputs {o.buggy_inputs or '-'}  targets {o.buggy_targets or '-'}")
        print(f"{'':28} fixed: inputs {o.fixed_inputs or '-'}  targets {o.fixed_targets or '-'}")
    for key, value in counts(outcomes).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
