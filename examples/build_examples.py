"""Build the bundled example models (checked in under examples/models/): one healthy, four broken.

.venv/bin/python examples/build_examples.py
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

OUT = Path(__file__).resolve().parent / "models"


def healthy_cnn() -> keras.Model:
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(10, activation="softmax", name="classes")(x)
    model = keras.Model(image, out, name="healthy_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def dense_on_image() -> keras.Model:
    """Dense straight after a convolution: applied per pixel, on the channel axis only."""
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    out = keras.layers.Dense(4, activation="softmax", name="head")(x)
    return keras.Model(image, out, name="dense_on_image")


def softmax_one_unit() -> keras.Model:
    """A binary classifier with softmax over a single unit: it always answers 1.0."""
    model = keras.Sequential(
        [
            keras.Input((20,), name="features"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(1, activation="softmax", name="probability"),
        ],
        name="softmax_one_unit",
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def dead_relu() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((20,), name="features"),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(3, activation="softmax", name="classes"),
        ],
        name="dead_relu",
    )
    kernel, bias = model.get_layer("hidden").get_weights()
    model.get_layer("hidden").set_weights([kernel, bias - 50.0])
    return model


def nan_weights() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((20,), name="features"),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="classes"),
        ],
        name="nan_weights",
    )
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[3, 2] = np.nan
    model.get_layer("hidden").set_weights([kernel, bias])
    return model


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for build in (healthy_cnn, dense_on_image, softmax_one_unit, dead_relu, nan_weights):
        keras.utils.set_random_seed(0)
        model = build()
        model.save(OUT / f"{model.name}.keras")
        print("wrote", OUT / f"{model.name}.keras")


if __name__ == "__main__":
    main()
