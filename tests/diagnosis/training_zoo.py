"""Models for the training rules (gradients and the training probe): for each code two that fire and near misses.

Each builder is tiny and seeded; `targets` gives the batch and targets the gradients and the probe run on.
"""

from __future__ import annotations

import keras
import numpy as np

from tests.diagnosis.zoo import Case, seeded

Batch = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _x(n: int = 64, features: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, features)).astype("float32")


def mlp(
    output: str | None,
    units: int = 1,
    hidden: tuple[int, ...] = (16,),
    activation: str = "relu",
    initializer: object = "glorot_uniform",
    name: str = "mlp",
) -> keras.Model:
    seeded()
    layers: list[keras.Layer] = [keras.Input((8,), name="x")]
    layers += [
        keras.layers.Dense(n, activation=activation, kernel_initializer=initializer, name=f"hidden{i + 1}")
        for i, n in enumerate(hidden)
    ]
    layers.append(keras.layers.Dense(units, activation=output, name="out"))
    return keras.Sequential(layers, name=name)


# -- bounded-output-regression (static) -----------------------------------------------------------------------


def sigmoid_regressor() -> keras.Model:
    return mlp("sigmoid", name="sigmoid_regressor")


def relu_price_regressor() -> keras.Model:
    return mlp("relu", name="relu_price_regressor")


def linear_regressor() -> keras.Model:
    return mlp(None, name="linear_regressor")


def sigmoid_classifier() -> keras.Model:
    return mlp("sigmoid", name="sigmoid_classifier")


# -- batches ---------------------------------------------------------------------------------------------------


def house_prices(model: keras.Model) -> Batch:
    """Regression targets in the hundreds of thousands, as in the Boston/California housing questions."""
    x = _x()
    return {"x": x}, {"y": (200_000 + 50_000 * x[:, :1]).astype("float32")}


def pixel_targets(model: keras.Model) -> Batch:
    """An autoencoder-style target left in 0..255."""
    x = _x()
    return {"x": x}, {"y": np.clip(128 + 60 * x[:, :1], 0, 255).astype("float32")}


def signed_labels(model: keras.Model) -> Batch:
    """Labels in {-1, +1} (an SVM habit) on a sigmoid output."""
    x = _x()
    return {"x": x}, {"y": np.where(x[:, :1] > 0, 1.0, -1.0).astype("float32")}


def binary_labels(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x}, {"y": (x[:, :1] > 0).astype("float32")}


def negative_values(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x}, {"y": (x[:, :1] - 2.0).astype("float32")}


def scaled_values(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x}, {"y": (0.5 * x[:, :1] + 0.1 * x[:, 1:2]).astype("float32")}


def class_indices(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x}, {"y": ((x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64"))}


def one_hot_classes(model: keras.Model) -> Batch:
    """The README tour's mix-up: one-hot rows for a model compiled with a sparse (class-id) loss."""
    x, y = class_indices(model)
    return x, {"y": np.eye(3, dtype="float32")[y["y"]]}


def too_wide(model: keras.Model) -> Batch:
    """Three values per row for a one-unit output: Keras would broadcast the output across them."""
    x = _x()
    return {"x": x}, {"y": x[:, :3].copy()}


def flat_values(model: keras.Model) -> Batch:
    """One value per row, shape (batch,): Keras expands it to the (batch, 1) output."""
    x = _x()
    return {"x": x}, {"y": x[:, 0].copy()}


def one_hot_labels(model: keras.Model) -> Batch:
    x, labels = class_indices(model)
    return x, {"y": np.eye(3, dtype="float32")[labels["y"]]}


def column_of_indices(model: keras.Model) -> Batch:
    x, labels = class_indices(model)
    return x, {"y": labels["y"].reshape(-1, 1)}


def four_class_indices(model: keras.Model) -> Batch:
    x, labels = class_indices(model)
    return x, {"y": labels["y"] + (x["x"][:, 2] > 1.0)}


def one_target_column(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x}, {"y": x[:, :1]}


# -- target-loss-mismatch -------------------------------------------------------------------------------------


def sparse_classifier() -> keras.Model:
    return mlp("softmax", units=3, name="sparse_classifier")


def categorical_classifier() -> keras.Model:
    return mlp("softmax", units=3, name="categorical_classifier")


def three_output_regressor() -> keras.Model:
    return mlp(None, units=3, name="three_output_regressor")


# -- vanishing-gradients --------------------------------------------------------------------------------------


def deep_sigmoid_stack() -> keras.Model:
    return mlp("sigmoid", hidden=(32,) * 10, activation="sigmoid", name="deep_sigmoid_stack")


def deep_sigmoid_wide() -> keras.Model:
    """Eight sigmoid layers of 64 units with LeCun initialisation, as in "deep MNIST net stuck at chance"."""
    return mlp("sigmoid", hidden=(64,) * 8, activation="sigmoid", initializer="lecun_normal", name="deep_sigmoid_wide")


def deep_relu_he() -> keras.Model:
    return mlp("sigmoid", hidden=(32,) * 10, activation="relu", initializer="he_normal", name="deep_relu_he")


# -- exploding-gradients, units-die-in-training, loss-not-decreasing -----------------------------------------


def relu_mlp() -> keras.Model:
    return mlp(None, hidden=(32, 32), name="relu_mlp")


def relu_classifier() -> keras.Model:
    return mlp("softmax", units=3, hidden=(32, 32), name="relu_classifier")


def saturated_sigmoid_output() -> keras.Model:
    """A sigmoid output driven far into saturation: binary cross-entropy clips it, so no gradient flows."""
    model = mlp("sigmoid", name="saturated_sigmoid_output")
    out = model.get_layer("out")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 0.0, bias + 40.0])
    return model


def unscaled_regression(model: keras.Model) -> Batch:
    x = _x()
    return {"x": x * 100.0}, {"y": (1000.0 * x[:, :1]).astype("float32")}


ADAM = {"optimizer": "adam"}


def sgd(rate: float) -> dict[str, object]:
    return {"optimizer": keras.optimizers.SGD(rate)}


TRAINING_CASES: tuple[Case, ...] = (
    Case("bounded-output-regression", sigmoid_regressor, True, ("out",), "ends in sigmoid", compile={"loss": "mse"}),
    Case("bounded-output-regression", relu_price_regressor, True, ("out",), "ends in relu", compile={"loss": "mae"}),
    Case("bounded-output-regression", linear_regressor, False, compile={"loss": "mse"}),
    Case("bounded-output-regression", sigmoid_classifier, False, compile={"loss": "binary_crossentropy"}),
    Case(
        "output-range-mismatch",
        sigmoid_regressor,
        True,
        ("out",),
        "received targets in [39.5",
        compile={"loss": "mse", **ADAM},
        targets=pixel_targets,
    ),
    Case(
        "output-range-mismatch",
        sigmoid_classifier,
        True,
        ("out",),
        "received targets in [-1, 1]",
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=signed_labels,
    ),
    Case(
        "output-range-mismatch",
        relu_price_regressor,
        True,
        ("out",),
        "outputs >= 0",
        compile={"loss": "mse", **ADAM},
        targets=negative_values,
    ),
    Case(
        "output-range-mismatch",
        sigmoid_classifier,
        False,
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=binary_labels,
    ),
    Case(
        "output-range-mismatch",
        relu_classifier,
        False,
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=class_indices,
    ),
    Case(
        "target-loss-mismatch",
        relu_classifier,
        True,
        ("out",),
        "expected integer class ids in [0, 3) for sparse_categorical_crossentropy over 3 classes",
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=four_class_indices,
    ),
    Case(
        "target-loss-mismatch",
        three_output_regressor,
        True,
        ("out",),
        "expected targets of the output's shape (64, 3) for mean_squared_error",
        compile={"loss": "mse", **ADAM},
        targets=one_target_column,
    ),
    Case(
        "target-loss-mismatch",
        sparse_classifier,
        False,
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=column_of_indices,
    ),
    Case(
        "target-loss-mismatch",
        categorical_classifier,
        False,
        compile={"loss": "categorical_crossentropy", **ADAM},
        targets=one_hot_labels,
    ),
    Case(
        "target-loss-mismatch",
        relu_mlp,
        False,
        compile={"loss": "mse", **ADAM},
        targets=one_target_column,
    ),
    Case(
        "vanishing-gradients",
        deep_sigmoid_stack,
        True,
        ("hidden1", "hidden2", "hidden3", "hidden4", "hidden5", "hidden6", "hidden7"),
        "first learning layer 'hidden1'",
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=binary_labels,
    ),
    Case(
        "vanishing-gradients",
        deep_sigmoid_wide,
        True,
        ("hidden1", "hidden2", "hidden3", "hidden4", "hidden5"),
        "first learning layer 'hidden1'",
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=binary_labels,
    ),
    Case(
        "vanishing-gradients",
        deep_relu_he,
        False,
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=binary_labels,
    ),
    Case(
        "exploding-gradients",
        relu_mlp,
        True,
        ("hidden1", "hidden2", "out"),
        "Training diverges",
        compile={"loss": "mse", **sgd(0.1)},
        targets=unscaled_regression,
    ),
    Case(
        "exploding-gradients",
        linear_regressor,
        True,
        ("hidden1", "out"),
        "Training diverges",
        compile={"loss": "mse", **sgd(0.5)},
        targets=house_prices,
    ),
    Case("exploding-gradients", relu_mlp, False, compile={"loss": "mse", **ADAM}, targets=scaled_values),
    Case(
        "loss-not-decreasing",
        saturated_sigmoid_output,
        True,
        ("out",),
        "expected a decrease",
        compile={"loss": "binary_crossentropy", **ADAM},
        targets=binary_labels,
    ),
    Case(
        "loss-not-decreasing",
        relu_classifier,
        True,
        ("out",),
        "expected a decrease",
        compile={"loss": "sparse_categorical_crossentropy", **sgd(1e-7)},
        targets=class_indices,
    ),
    Case(
        "loss-not-decreasing",
        relu_classifier,
        False,
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=class_indices,
    ),
    Case(
        "units-die-in-training",
        relu_mlp,
        True,
        ("hidden1",),
        "dead units before the probe",
        compile={"loss": "mse", **sgd(0.05)},
        targets=unscaled_regression,
        also=(("hidden2",),),
    ),
    Case(
        "units-die-in-training",
        relu_classifier,
        True,
        ("hidden2",),
        "dead units before the probe",
        compile={"loss": "sparse_categorical_crossentropy", **sgd(50.0)},
        targets=class_indices,
    ),
    Case(
        "units-die-in-training",
        relu_classifier,
        False,
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=class_indices,
    ),
    Case(
        "target-loss-mismatch",
        relu_classifier,
        True,
        ("out",),
        "expected one class id per row, shape (64,), for sparse_categorical_crossentropy; received integers of shape "
        "(64, 3) in [0, 1] (one-hot rows: use categorical_crossentropy, or send y.argmax(-1))",
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=one_hot_classes,
    ),
    Case(
        "target-loss-mismatch",
        relu_classifier,
        True,
        ("out",),
        "(class ids: use sparse_categorical_crossentropy, or one-hot encode them)",
        compile={"loss": "categorical_crossentropy", **ADAM},
        targets=class_indices,
    ),
    Case(
        "target-loss-mismatch",
        linear_regressor,
        True,
        ("out",),
        "expected targets of the output's shape (64, 1) for mean_squared_error; received values of shape (64, 3)",
        compile={"loss": "mse", **ADAM},
        targets=too_wide,
    ),
    Case(
        "target-loss-mismatch",
        relu_classifier,
        False,
        compile={"loss": "sparse_categorical_crossentropy", **ADAM},
        targets=class_indices,
    ),
    Case("target-loss-mismatch", linear_regressor, False, compile={"loss": "mse", **ADAM}, targets=flat_values),
)
