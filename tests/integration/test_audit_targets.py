"""`layerscope audit --inputs x.npy --targets y.npy [--probe-steps N]`, locally and through a server."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from layerscope.cli.app import app
from tests.conftest import ServerHandle
from tests.support import models

RUNNER = CliRunner()


def sigmoid_regressor() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), name="x"),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(1, activation="sigmoid", name="price"),
        ],
        name="sigmoid_regressor",
    )
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("targets")
    model = models.save(sigmoid_regressor(), folder)
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (100.0 + 20.0 * x[:, :1]).astype("float32"))
    return model, folder / "x.npy", folder / "y.npy"


def audit(*args: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["audit", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def codes(doc: dict[str, object]) -> list[str]:
    (model,) = doc["models"]  # type: ignore[index]
    return sorted(f["code"] for f in model["findings"])


def test_targets_run_the_training_rules_and_the_probe_locally_and_through_the_server(
    files: tuple[Path, Path, Path], server: ServerHandle, tmp_path: Path
) -> None:
    model, x, y = files
    status, out = audit(str(model), "--inputs", str(x), "--format", "json")
    assert status == 0 and "probe" not in json.loads(out)["models"][0]
    assert codes(json.loads(out)) == ["bounded-output-regression"]
    status, out = audit(str(model), "--inputs", str(x), "--targets", str(y), "--probe-steps", "2", "--format", "json")
    local = json.loads(out)
    assert status == 1  # output-range-mismatch is an error
    assert {"bounded-output-regression", "output-range-mismatch"} <= set(codes(local))
    probe = local["models"][0]["probe"]
    assert [s["step"] for s in probe["steps"]] == [0, 1, 2]
    assert set(probe["steps"][0]["gradient_norms"]) == {"hidden", "price"}
    assert probe["optimizer"].startswith("Adam(") and probe["loss"] == "mean_squared_error"
    args = (str(model), "--inputs", str(x), "--targets", str(y), "--probe-steps", "2", "--format", "json")
    remote = json.loads(audit(*args, "--server", server.target)[1])
    assert codes(remote) == codes(local)
    assert [s["loss"] for s in remote["models"][0]["probe"]["steps"]] == pytest.approx(
        [s["loss"] for s in probe["steps"]], rel=1e-4
    )
    page = tmp_path / "report.html"
    audit(str(model), "--inputs", str(x), "--targets", str(y), "--format", "html", "--output", str(page))
    text = page.read_text()
    assert "probe loss by step" in text and "gradient norm by depth, before the first step" in text


def test_targets_without_inputs_are_refused_in_one_line(files: tuple[Path, Path, Path]) -> None:
    model, _, y = files
    result = RUNNER.invoke(app, ["audit", str(model), "--targets", str(y)])
    assert result.exit_code == 2
    assert "--targets are the labels of --inputs" in result.output


def test_explain_names_a_training_rule() -> None:
    result = RUNNER.invoke(app, ["audit", "--explain", "vanishing-gradients"])
    assert result.exit_code == 0
    assert "vanishing-gradients (warning, training rule)" in result.stdout
    assert "Default thresholds: max_ratio=0.001, min_learning_layers=3" in result.stdout


def test_one_hot_labels_under_a_sparse_loss_are_a_finding_locally_and_through_the_server(
    server: ServerHandle, tmp_path: Path
) -> None:
    """The README tour's old bug as an audit: exit 1 with target-loss-mismatch, never "internal" and exit 2."""
    model = Path(__file__).resolve().parents[2] / "examples" / "models" / "healthy_cnn.keras"
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((16, 28, 28, 1)).astype("float32"))
    np.save(tmp_path / "y.npy", np.eye(10, dtype="float32")[rng.integers(0, 10, 16)])
    args = (str(model), "--inputs", str(tmp_path / "x.npy"), "--targets", str(tmp_path / "y.npy"), "--format", "json")
    for where in ((), ("--server", server.target)):
        status, out = audit(*args, *where)
        (entry,) = json.loads(out)["models"]
        assert status == 1 and entry["error"] is None, out
        (finding,) = [f for f in entry["findings"] if f["code"] == "target-loss-mismatch"]
        assert finding["severity"] == "error" and finding["layers"] == ["classes"]
        assert "of shape (16, 10) in [0, 1] (one-hot rows: use categorical_crossentropy" in finding["message"]
