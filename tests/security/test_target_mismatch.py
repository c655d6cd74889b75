"""Targets that do not fit the outputs and the loss are checked before anything is traced: never INTERNAL.

On main `Diagnose(y=...)` with the right batch and the wrong width reached tracing and came back INTERNAL
with a logged traceback, once per call; so did the README tour's one-hot labels on a model compiled with a
sparse loss. Now Diagnose names the mismatch as the finding target-loss-mismatch (and runs no gradient or
probe on targets that cannot be scored), and Capture with y refuses with INVALID_ARGUMENT, saying what was
expected and what was received.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
from tests.conftest import ServerHandle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"
X = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
IDS = np.random.default_rng(1).integers(0, 10, 32)
ONE_HOT = np.eye(10, dtype="float32")[IDS]
GRADIENTS = ("gradient", "kernel_gradient")


@pytest.fixture(scope="module")
def client(server: ServerHandle) -> Iterator[Client]:
    with Client(server.target, timeout=120) as c:
        c.upload_model("digits", EXAMPLES / "healthy_cnn.keras")  # compiled with sparse_categorical_crossentropy
        yield c


@pytest.mark.parametrize(
    ("y", "loss", "expected", "received"),
    [
        (ONE_HOT, None, "expected one class id per row, shape (32,)", "received integers of shape (32, 10)"),
        (ONE_HOT[:, :5], "categorical_crossentropy", "expected targets of the output's shape (32, 10)", "(32, 5)"),
        (IDS[:, None].astype("float32"), "mse", "expected targets of the output's shape (32, 10)", "(32, 1)"),
        (IDS + 5, None, "expected integer class ids in [0, 10)", "received integers of shape (32,) in [5, 14]"),
        (IDS, "categorical_crossentropy", "(32, 10) for categorical_crossentropy", "or one-hot encode them"),
    ],
    ids=["one-hot-for-sparse", "wrong-width", "broadcast-width", "ids-out-of-range", "ids-for-one-hot"],
)
def test_capture_with_targets_that_do_not_fit_is_invalid_argument(
    client: Client, y: np.ndarray, loss: str | None, expected: str, received: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.capture("digits", X, y=y, kinds=GRADIENTS, loss=loss)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    message = caught.value.message
    assert message.startswith("Target 'classes' of model 'healthy_cnn' (output shape (None, 10)): expected"), message
    assert expected in message and received in message, message


@pytest.mark.parametrize(
    ("y", "loss"),
    [(ONE_HOT, None), (ONE_HOT[:, :5], "categorical_crossentropy"), (IDS, "categorical_crossentropy")],
    ids=["one-hot-for-sparse", "wrong-width", "ids-for-one-hot"],
)
def test_diagnose_names_the_mismatch_as_a_finding(client: Client, y: np.ndarray, loss: str | None) -> None:
    report = client.diagnose("digits", X, y=y, loss=loss, probe_steps=3)
    (finding,) = report.by_code("target-loss-mismatch")
    assert finding.severity == "error" and finding.layers == ("classes",)
    assert "expected" in finding.message and "received" in finding.message, finding.message
    assert report.probe is None  # no probe on targets the loss cannot score
    assert not report.by_code("vanishing-gradients") and not report.by_code("exploding-gradients")


def test_targets_that_fit_still_train(client: Client) -> None:
    report = client.diagnose("digits", X, y=IDS, probe_steps=2)
    assert not report.by_code("target-loss-mismatch")
    assert report.probe is not None and len(report.probe.steps) == 3
    assert client.capture("digits", X, y=IDS, kinds=GRADIENTS).summaries
    assert client.capture("digits", X, y=ONE_HOT, loss="categorical_crossentropy", kinds=GRADIENTS).summaries
