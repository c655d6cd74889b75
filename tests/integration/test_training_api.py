"""Gradients, the training probe and the training findings over gRPC, against a real server on a free port."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layerscope.client import AsyncClient, Client, InvalidArgumentError
from tests.conftest import ServerHandle
from tests.support import models
from tests.support.metrics import scrape


def regressor() -> keras.Model:
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((6,), name="x"),
            keras.layers.Dense(12, activation="relu", name="hidden"),
            keras.layers.Dense(1, activation="sigmoid", name="out"),
        ],
        name="regressor",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 6)).astype("float32")
    return x, (3.0 * x[:, :1] + 10.0).astype("float32")  # far outside a sigmoid's [0, 1]


@pytest.fixture(scope="module")
def served(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> keras.Model:
    model = regressor()
    path = models.save(model, tmp_path_factory.mktemp("training"))
    with Client(server.target) as c:
        c.upload_model("regressor", path)
    return model


def test_capture_gradients_equal_gradient_tape(client: Client, served: keras.Model) -> None:
    x, y = batch()
    cap = client.capture("regressor", x, y=y, kinds=("gradient", "kernel_gradient", "bias_gradient"), full="*")
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, served(x, training=False))
    kernel, bias = tape.gradient(loss, [served.get_layer("hidden").kernel, served.get_layer("hidden").bias])
    np.testing.assert_allclose(cap.tensors["hidden"]["kernel_gradient"], kernel, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(cap.tensors["hidden"]["bias_gradient"], bias, rtol=1e-4, atol=1e-7)
    assert cap.summaries["out"]["gradient"].count == 16
    stored = client.get_run(cap.run_id)
    assert {"gradient", "kernel_gradient", "bias_gradient"} <= set(stored.summaries["hidden"])


def test_gradient_refusals_are_invalid_argument_and_say_what_to_pass(client: Client, served: keras.Model) -> None:
    x, y = batch()
    with pytest.raises(InvalidArgumentError, match="Expected targets y with the gradient kinds"):
        client.capture("regressor", x, kinds=("gradient",))
    with pytest.raises(InvalidArgumentError, match=r"Expected a Keras loss identifier among .*received 'l2'"):
        client.capture("regressor", x, y=y, kinds=("gradient",), loss="l2")
    with pytest.raises(InvalidArgumentError, match=r"Expected probe_steps >= 0 \(0: no probe\); received -1"):
        client.diagnose("regressor", x, y=y, probe_steps=-1)


def test_diagnose_with_targets_probes_a_copy_and_finds_the_range_mismatch(
    client: Client, served: keras.Model, server: ServerHandle
) -> None:
    x, y = batch()
    weights = [w.tobytes() for w in served.get_weights()]
    report = client.diagnose("regressor", x, y=y, probe_steps=3)
    assert report.probe is not None
    assert [s.step for s in report.probe.steps] == [0, 1, 2, 3]
    assert report.probe.optimizer.startswith("Adam(learning_rate=0.01")
    assert set(report.probe.steps[0].gradient_norms) == {"hidden", "out"}
    codes = {f.code for f in report.findings}
    assert {"output-range-mismatch", "bounded-output-regression"} <= codes
    stored = client.get_run(report.run_id)
    assert stored.probe == report.probe
    again = client.diagnose("regressor", x, y=y, probe_steps=3)
    assert again.probe is not None and again.probe.steps[0].loss == pytest.approx(report.probe.steps[0].loss)
    change = client.compare(report.run_id, again.run_id).probe
    assert change is not None and change.first_loss_delta == pytest.approx(0.0, abs=1e-5)
    # The first step's gradient norms are the model-health series of the latest probe.
    samples = scrape(server.metrics_url)
    series = 'layerscope_layer_gradient_norm{layer="hidden",model="regressor",version="1"}'
    assert samples[series] == pytest.approx(again.probe.steps[0].gradient_norms["hidden"], rel=1e-6)
    # The served model answers as before: its weights were only read.
    after = client.predict("regressor", x)["out"]
    np.testing.assert_allclose(after, served(x, training=False), rtol=1e-5, atol=1e-6)
    assert [w.tobytes() for w in served.get_weights()] == weights


async def test_async_client_takes_targets_too(server: ServerHandle, served: keras.Model) -> None:
    x, y = batch()
    async with AsyncClient(server.target, timeout=120) as c:
        cap = await c.capture("regressor", x, y=y, kinds=("kernel_gradient",), loss="mae")
        report = await c.diagnose("regressor", x, y=y, probe_steps=0)
    assert "kernel_gradient" in cap.summaries["hidden"]
    assert report.probe is None


def test_a_model_without_a_compiled_loss_needs_one_named(
    client: Client, server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keras.utils.set_random_seed(9)
    bare = keras.Sequential([keras.Input((6,), name="x"), keras.layers.Dense(2, name="out")], name="bare")
    client.upload_model("bare", models.save(bare, tmp_path_factory.mktemp("bare")))
    x, y = np.ones((4, 6), "float32"), np.ones((4, 2), "float32")
    with pytest.raises(InvalidArgumentError, match=r"has no compiled loss .* expected a loss named in the request"):
        client.capture("bare", x, y=y, kinds=("kernel_gradient",))
    with pytest.raises(InvalidArgumentError, match=r"Expected an optimizer among .*received 'adamx'"):
        client.diagnose("bare", x, y=y, loss="mse", optimizer="adamx")
    report = client.diagnose("bare", x, y=y, loss="mse", optimizer="sgd", learning_rate=0.1, probe_steps=2)
    assert report.probe is not None and report.probe.optimizer == "SGD(learning_rate=0.1)"
    assert report.probe.steps[-1].loss < report.probe.steps[0].loss
