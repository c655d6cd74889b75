"""Wrong answers a new user met on the second try, against a real server on free ports: labels that do not fit
the loss, inputs by the wrong name, NaN inputs, a learning rate of 10, a second server on a taken port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from layerscope.client import Client, InvalidArgumentError
from layerscope.service.errors import StartupError
from layerscope.service.grpc.server import start_server
from layerscope.service.inspector import Inspector
from layerscope.service.settings import Settings
from layerscope.service.telemetry import Telemetry
from tests.conftest import ServerHandle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


@pytest.fixture(scope="module")
def digits(server: ServerHandle) -> str:
    """The README tour's model: healthy_cnn, one input named `image`, sparse_categorical_crossentropy."""
    with Client(server.target) as c:
        c.upload_model("digits", EXAMPLES / "healthy_cnn.keras")
    return "digits"


def images(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, 28, 28, 1)).astype("float32")


def test_an_input_by_a_name_the_model_does_not_have_is_refused_naming_its_inputs(client: Client, digits: str) -> None:
    expected = "Model 'digits' expects inputs ['image']; received ['img']: 'img' is not one of them."
    with pytest.raises(InvalidArgumentError) as caught:
        client.predict(digits, {"img": images()})
    assert caught.value.message == expected
    with pytest.raises(InvalidArgumentError) as caught:
        client.capture(digits, {"img": images()})
    assert caught.value.message == expected
    with pytest.raises(InvalidArgumentError) as caught:
        client.diagnose(digits, {"img": images()})
    assert caught.value.message == expected
    # By its name, or unnamed (the one input, by position); float64 within float32's range is computed in float32.
    named = client.predict(digits, {"image": images()})["classes"]
    np.testing.assert_array_equal(client.predict(digits, images())["classes"], named)
    np.testing.assert_allclose(client.predict(digits, images().astype("float64"))["classes"], named, rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="past float32's largest"):
        client.predict(digits, np.full((1, 28, 28, 1), 1e39))


def test_labels_that_do_not_fit_the_loss_are_a_finding_never_an_internal_error(client: Client, digits: str) -> None:
    """One-hot rows under a sparse loss (the tour's old bug), integer labels under a categorical loss and
    labels past the last class: a target-loss-mismatch error with what was expected and received."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1)).astype("float32")
    labels = rng.integers(0, 10, 32)
    cases = [
        (np.eye(10, dtype="float32")[labels], None, "expected one class id per row, shape (32,), for "
         "sparse_categorical_crossentropy"),
        (labels, "categorical_crossentropy", "expected targets of the output's shape (32, 10) for categorical"),
        (labels + 5, None, "expected integer class ids in [0, 10) for sparse_categorical_crossentropy over 10"),
        (np.ones((32, 7), "float32"), "mse", "expected targets of the output's shape (32, 10) for mean_squared"),
    ]  # fmt: skip
    for y, loss, words in cases:
        report = client.diagnose(digits, x, y=y, loss=loss, probe_steps=2)
        mismatch = [f for f in report.findings if f.code == "target-loss-mismatch"]
        assert len(mismatch) == 1 and words in mismatch[0].message, [f.message for f in report.findings]
        assert mismatch[0].severity == "error" and mismatch[0].layers == ("classes",)
        assert report.probe is None  # Keras cannot compute that loss: no gradients, no probe
        # Capture has no findings: its gradient kinds are refused with the same words.
        with pytest.raises(InvalidArgumentError, match=re.escape(words)):
            client.capture(digits, x, y=y, loss=loss, kinds=("gradient", "kernel_gradient"))
    fitting = client.diagnose(digits, x, y=labels, probe_steps=2)
    assert "target-loss-mismatch" not in {f.code for f in fitting.findings}
    assert fitting.probe is not None


def test_nan_inputs_are_named_by_non_finite(client: Client, digits: str) -> None:
    """One NaN: the ReLU after the first convolution turns it into 0 on this TensorFlow, so nothing
    downstream shows it; all NaN: the units look dead and the output constant. Both name the input."""
    one = images()
    one[0, 3, 3, 0] = np.nan
    for x, count in ((one, 1), (np.full_like(one, np.nan), one.size)):
        report = client.diagnose(digits, x)
        (finding,) = [f for f in report.findings if f.code == "non-finite"]
        assert finding.layers == ("image",) and finding.severity == "error"
        assert finding.message.startswith("Input 'image' holds non-finite values before any layer runs")
        assert f"received {count} NaN" in finding.message


def test_a_learning_rate_of_ten_is_one_finding_exploding_gradients(client: Client, digits: str) -> None:
    labels = np.random.default_rng(1).integers(0, 10, 8)
    report = client.diagnose(digits, images(), y=labels, optimizer="adam", learning_rate=10.0, probe_steps=5)
    codes = [f.code for f in report.findings]
    assert "exploding-gradients" in codes and "loss-not-decreasing" not in codes, [f.message for f in report.findings]
    assert not any("not far too small" in f.suggestion for f in report.findings)


# -- a taken port: refused in one line, never shared -------------------------------------------------------


def serve(*flags: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "layerscope.cli", "serve", "--model-repository", str(cwd / "models"), *flags]
    env = {**os.environ, "LAYERSCOPE_DATABASE_URL": f"sqlite:///{cwd / 'runs.db'}"}
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(660)
def test_a_second_server_on_a_taken_port_refuses_to_start_in_one_line(server: ServerHandle, tmp_path: Path) -> None:
    grpc_port, metrics_port = server.app.port, server.app.metrics_port
    taken = serve("--port", str(grpc_port), "--metrics-port", "0", cwd=tmp_path)
    assert taken.returncode == 1 and taken.stdout == "", taken.stdout + taken.stderr
    assert taken.stderr.splitlines() == [
        f"layerscope: cannot serve gRPC on 127.0.0.1:{grpc_port}: Address already in use (another server?); "
        "expected a free port: choose another with --port or LAYERSCOPE_PORT, or 0 for any free one."
    ]
    metrics = serve("--port", "0", "--metrics-port", str(metrics_port), cwd=tmp_path)
    assert metrics.returncode == 1 and metrics.stdout == "", metrics.stdout + metrics.stderr
    assert metrics.stderr.splitlines() == [
        f"layerscope: cannot serve metrics on 127.0.0.1:{metrics_port}: Address already in use (another server?); "
        "expected a free port: choose another with --metrics-port or LAYERSCOPE_METRICS_PORT, or 0 for any free one."
    ]
    with Client(server.target) as c:  # the first server still serves, alone
        assert c.health() == "SERVING"


async def test_the_grpc_server_never_shares_a_port_another_grpc_server_listens_on() -> None:
    """What decides, past the probe: gRPC's servers set SO_REUSEPORT by default, so a second one would listen
    beside the first and take half its new connections; layerscope's binds without it and fails."""
    other = grpc.aio.server()  # a gRPC server with the defaults, SO_REUSEPORT on
    port = other.add_insecure_port("127.0.0.1:0")
    await other.start()
    try:
        settings = Settings(host="127.0.0.1", port=port, metrics_port=0)
        with pytest.raises(StartupError, match=rf"cannot serve gRPC on 127\.0\.0\.1:{port}: the address is in use"):
            await start_server(settings, cast(Inspector, None), Telemetry(CollectorRegistry()))
    finally:
        await other.stop(0)
