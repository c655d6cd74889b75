"""Keras loads a model whose layer names TensorFlow refuses as name scopes (a non-ASCII letter, a space), but no
call of it can run: every Capture and Predict failed as an internal error. Such a model is refused at load, by
name; an input's name is never a scope, so it may be anything."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from layerscope.service.errors import InvalidInput
from layerscope.service.models.registry import open_model


def functional(layer: str = "dense", model: str = "m", inputs: str = "x") -> keras.Model:
    x = keras.Input((4,), name=inputs)
    return keras.Model(x, keras.layers.Dense(2, name=layer)(x), name=model)


def nested(inner_layer: str) -> keras.Model:
    x = keras.Input((4,), name="x")
    return keras.Model(x, keras.layers.Dense(2, name="head")(functional(inner_layer, "inner")(x)), name="outer")


def saved(model: keras.Model, tmp: Path) -> Path:
    path = tmp / "model.keras"
    model.save(path)
    return path


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (functional(layer="couche_été"), "Dense 'couche_été'"),
        (functional(layer="two words"), "Dense 'two words'"),
        (functional(model="modèle"), "Functional 'modèle'"),
        (nested("層"), "Dense '層'"),  # inside a nested model
    ],
)
def test_names_tensorflow_cannot_scope_are_refused_at_load_by_name(
    model: keras.Model, named: str, tmp_path: Path
) -> None:
    with pytest.raises(
        InvalidInput, match=rf"Expected layer names TensorFlow accepts .* model 'digits'; received {named}"
    ):
        open_model(saved(model, tmp_path), "digits", 1)


def test_an_input_named_in_any_script_still_loads_and_runs(tmp_path: Path) -> None:
    loaded = open_model(saved(functional(inputs="entrée"), tmp_path), "digits", 1)
    assert loaded.engine.predict({"entrée": np.ones((1, 4), "float32")})["dense"].shape == (1, 2)
