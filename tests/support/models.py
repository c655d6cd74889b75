"""Tiny, named, seeded Keras models that the tests build and save as real archives."""

from __future__ import annotations

from pathlib import Path

import keras


def small_cnn() -> keras.Model:
    """Conv2D + pooling + Dense: the shape of the walking-skeleton test."""
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    output = keras.layers.Dense(3, activation="softmax", name="probabilities")(x)
    return keras.Model(image, output, name="small_cnn")


def nan_model() -> keras.Model:
    """A Dense whose kernel holds a NaN: every output is NaN from there on."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="broken")], name="nan_model")
    kernel, bias = model.layers[0].get_weights()
    kernel[0, 0] = float("nan")
    model.layers[0].set_weights([kernel, bias])
    return model


def dead_relu_model() -> keras.Model:
    """A ReLU layer whose bias is so negative that no unit ever activates."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="dead"),
            keras.layers.Dense(2, name="out"),
        ],
        name="dead_relu",
    )
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights([kernel, bias - 100.0])
    return model


def lambda_model(marker: Path) -> keras.Model:
    """A Lambda layer whose code would write `marker` if anything ever ran it."""
    image = keras.Input((4,), name="x")

    def payload(t):  # type: ignore[no-untyped-def]
        with open(str(marker), "w") as f:
            f.write("executed")
        return t

    return keras.Model(image, keras.layers.Lambda(payload, name="payload")(image), name="lambda_model")


def save(model: keras.Model, folder: Path, name: str | None = None) -> Path:
    path = folder / f"{name or model.name}.keras"
    model.save(path)
    return path
