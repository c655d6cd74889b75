"""Wrong answers a new user met on the second try, against a real server on free ports: inputs by the wrong
name, NaN inputs, a learning rate of 10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
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
