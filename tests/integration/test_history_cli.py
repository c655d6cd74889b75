"""`layerscope runs` and `layerscope compare` read the history of a running server as tables."""

from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from layerscope.cli.app import app
from layerscope.client import Client
from tests.conftest import ServerHandle
from tests.support import models


def test_runs_and_compare_show_a_layer_that_died(client: Client, server: ServerHandle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    healthy = models.dead_relu_model()
    kernel, bias = healthy.get_layer("dead").get_weights()
    healthy.get_layer("dead").set_weights([kernel, bias + 100.0])  # undo the dead bias: every unit fires
    client.upload_model("history", models.save(healthy, tmp_path, "alive"))
    client.upload_model("history", models.save(models.dead_relu_model(), tmp_path, "dead"))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    client.capture("history", x, version=1, run_id="hist-alive")
    client.diagnose("history", version=2, run_id="hist-dead")

    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "history", "--server", server.target], env={"COLUMNS": "220"})
    assert listed.exit_code == 0, listed.output
    assert "hist-alive" in listed.output and "hist-dead" in listed.output and "dead-units" in listed.output

    compared = runner.invoke(
        app, ["compare", "hist-alive", "hist-dead", "--server", server.target], env={"COLUMNS": "220"}
    )
    assert compared.exit_code == 0, compared.output
    assert "new: dead-units" in compared.output
    header = next(line for line in compared.output.splitlines() if "Δ dead" in line)
    row = next(line for line in compared.output.splitlines() if cells(line)[:2] == ["dead", "activation"])
    assert dict(zip(cells(header), cells(row), strict=True))["Δ dead"] == "+1.000"  # from 0 to every unit
    change = next(
        c for c in client.compare("hist-alive", "hist-dead").changes if (c.layer, c.kind) == ("dead", "activation")
    )
    assert change.dead_unit_fraction_delta == 1.0

    first = runner.invoke(app, ["runs", "history", "--limit", "1", "--server", server.target], env={"COLUMNS": "220"})
    assert "hist-dead" in first.output and "hist-alive" not in first.output  # newest first
    token = first.output.split("--page-token", 1)[1].split()[0]
    second = runner.invoke(
        app,
        ["runs", "history", "--limit", "1", "--page-token", token, "--server", server.target],
        env={"COLUMNS": "220"},
    )
    assert second.exit_code == 0 and "hist-alive" in second.output and "hist-dead" not in second.output

    missing = runner.invoke(app, ["compare", "hist-alive", "nope", "--server", server.target])
    assert missing.exit_code == 2 and "nope" in missing.output


def cells(line: str) -> list[str]:
    """A table row's cells: columns stand two or more spaces apart."""
    return re.split(r"\s{2,}", line.strip())
