"""The declared-size budget, round three: a check that cannot measure refuses (naming the layer) or measures
another way, and sizes are counted in bytes by dtype, not in elements assumed to be float32."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from layerscope.service.errors import UnsafeModel
from layerscope.service.models.budget import ModelBudget, check_budget
from layerscope.service.models.registry import open_model
from tests.support import models

Config = dict[str, Any]


def config_of(model: keras.Model, folder: Path) -> Config:
    """The config.json of the model's archive: what the budget reads before Keras loads anything."""
    with zipfile.ZipFile(models.save(model, folder)) as archive:
        return json.loads(archive.read("config.json"))  # type: ignore[no-any-return]


def entry(config: Config, name: str) -> Config:
    return next(item for item in config["config"]["layers"] if item["name"] == name)


def stateful(kind: Callable[..., keras.Layer] = keras.layers.SimpleRNN, batch: int = 2) -> keras.Model:
    x = keras.Input((4, 3), batch_size=batch, name="x")
    h = kind(5, stateful=True, name="rnn")(x)
    return keras.Model(x, keras.layers.RepeatVector(2, name="repeat")(h), name="stateful")


@pytest.mark.parametrize("kind", [keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU])
@pytest.mark.parametrize("repeats", [50_000_000, 2_000_000_000])
def test_a_stateful_layer_no_longer_hides_what_follows_it(
    kind: Callable[..., keras.Layer], repeats: int, tmp_path: Path
) -> None:
    """Keras builds a stateful layer's state from concrete zeros, which a stateless rebuild forbids; on main
    the budget gave up, measured nothing and passed a RepeatVector bomb behind it."""
    config = config_of(stateful(kind), tmp_path)
    entry(config, "repeat")["config"]["n"] = repeats
    with pytest.raises(UnsafeModel, match=rf"received layer 'repeat' declaring {repeats * 5} float32 elements"):
        check_budget(config, ModelBudget())


def test_a_stateful_layer_is_measured_with_its_state_and_still_loads(tmp_path: Path) -> None:
    model = stateful(keras.layers.LSTM, batch=2)
    declared = check_budget(config_of(model, tmp_path), ModelBudget())
    weights = model.count_params()
    assert declared.state == 2 * 2 * 5  # h and c, batch 2, 5 units
    assert declared.parameters == weights + declared.state
    assert declared.largest_output.name == "repeat" and declared.largest_output.elements == 10
    loaded = open_model(models.save(model, tmp_path, "ok"), "ok", 1, budget=ModelBudget())
    assert loaded.engine.predict({"x": np.zeros((2, 4, 3), "float32")})["repeat"].shape == (2, 2, 5)


def test_the_state_of_a_stateful_layer_at_a_huge_declared_batch_is_refused(tmp_path: Path) -> None:
    """The state is batch x units, allocated as the layer is built: a declared batch of a billion is 40 GB at
    load, inside a Bidirectional wrapper too."""
    x = keras.Input((4, 3), batch_size=2, name="x")
    y = keras.layers.Bidirectional(keras.layers.LSTM(5, stateful=True, name="lstm"), name="both")(x)
    config = config_of(keras.Model(x, y, name="wrapped"), tmp_path)
    entry(config, "x")["config"]["batch_shape"][0] = 1_000_000_000
    with pytest.raises(UnsafeModel, match=r"of which 20000000000 the state of stateful recurrent layers"):
        check_budget(config, ModelBudget())


def test_a_layer_that_cannot_be_rebuilt_is_refused_by_name(tmp_path: Path) -> None:
    """Whatever does not rebuild without memory is refused, naming the layer, rather than loaded unmeasured."""
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(3, name="fine")(x)
    config = config_of(keras.Model(x, keras.layers.Dense(2, name="broken")(h), name="m"), tmp_path)
    entry(config, "broken")["config"]["units"] = -1
    with pytest.raises(UnsafeModel) as caught:
        check_budget(config, ModelBudget())
    message = caught.value.message
    assert message.startswith("Expected a model whose declared sizes can be measured before it loads"), message
    assert "received one whose layer 'broken' (Dense) could not be: ValueError" in message, message


def dense(dtype: str, units: int = 100) -> keras.Model:
    x = keras.Input((9,), name="x", dtype=dtype)
    return keras.Model(x, keras.layers.Dense(units, dtype=dtype, name="wide")(x), name=f"dense_{dtype}")


def test_parameters_count_bytes_by_dtype(tmp_path: Path) -> None:
    """The bounds are in float32 elements: the same layer in float64 holds twice the bytes and is refused
    where its float32 twin passes; float16 counts half. On main both passed as 1,000 parameters."""
    budget = ModelBudget(max_parameters=1500)
    assert check_budget(config_of(dense("float32"), tmp_path), budget).parameter_bytes == 1000 * 4
    assert check_budget(config_of(dense("float16"), tmp_path), budget).parameter_bytes == 1000 * 2
    with pytest.raises(UnsafeModel, match=r"at most 1500 parameters \(of float32: 6000 bytes\); received one "):
        check_budget(config_of(dense("float64"), tmp_path), budget)


def test_layer_outputs_count_bytes_by_dtype(tmp_path: Path) -> None:
    budget = ModelBudget(max_layer_elements=150)
    assert check_budget(config_of(dense("float32"), tmp_path), budget).largest_output.bytes == 400
    with pytest.raises(UnsafeModel, match=r"received layer 'wide' declaring 100 float64 elements \(800 bytes\)"):
        check_budget(config_of(dense("float64"), tmp_path), budget)
    with pytest.raises(UnsafeModel, match=r"in all \(of float32: 800 bytes\); received a model declaring 109 "):
        check_budget(config_of(dense("float64"), tmp_path), ModelBudget(max_total_elements=200))


def test_a_float64_policy_doubles_what_the_server_allocates(tmp_path: Path) -> None:
    """The assumption the bounds rest on, tested: what Keras allocates follows the dtype the budget counts."""
    loaded = {
        dtype: open_model(models.save(dense(dtype), tmp_path, dtype), dtype, 1, budget=ModelBudget())
        for dtype in ("float32", "float64")
    }
    sizes = {d: sum(w.nbytes for w in m.engine.model.get_weights()) for d, m in loaded.items()}  # type: ignore[attr-defined]
    outputs = {d: m.engine.predict({"x": np.zeros((1, 9), d)})["wide"].nbytes for d, m in loaded.items()}
    assert sizes["float64"] == 2 * sizes["float32"] == 2 * 4000
    assert outputs["float64"] == 2 * outputs["float32"] == 800
