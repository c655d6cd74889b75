"""Model health on /metrics: per-layer series from sampled Predict traffic (never from an ad-hoc capture),
gone when the model is unloaded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from layerscope.client import Client, ResourceExhaustedError
from tests.conftest import ServerHandle
from tests.support import models
from tests.support.metrics import scrape


def test_nan_and_dead_layers_show_in_the_health_series_until_unloaded(
    client: Client, server: ServerHandle, tmp_path: Path
) -> None:
    before = scrape(server.metrics_url)
    client.upload_model("nan", models.save(models.nan_model(), tmp_path))
    client.upload_model("dead", models.save(models.dead_relu_model(), tmp_path))
    # Ad-hoc calls are stored with their runs; they never set the live picture the gauges show.
    client.capture("nan", np.ones((4, 4), "float32"))
    client.capture("dead", np.ones((4, 4), "float32"))
    adhoc = scrape(server.metrics_url)
    assert not any(key.startswith("layerscope_layer_") and 'model="dead"' in key for key in adhoc)

    # Production traffic feeds them: at the default 5% rate every 20th Predict of each model is sampled (once
    # its live capture function is traced, in the background after the upload).
    dead_series = 'layerscope_layer_dead_unit_fraction{layer="dead",model="dead",version="1"}'
    nan_series = 'layerscope_layer_nonfinite_values{layer="broken",model="nan",version="1"}'

    def traffic() -> None:
        for _ in range(20):
            client.predict("nan", np.ones((4, 4), "float32"))
            client.predict("dead", np.ones((4, 4), "float32"))

    wait_for_series(server, (dead_series, nan_series), traffic)
    client.diagnose("dead")
    samples = scrape(server.metrics_url)

    # kernel[0, 0] is NaN: unit 0 of each of the 4 examples is NaN, units 1 and 2 stay finite
    nonfinite = samples['layerscope_layer_nonfinite_values{layer="broken",model="nan",version="1"}']
    assert nonfinite >= 4 and nonfinite % 4 == 0  # 4 in each sampled request, summed over the open window
    assert samples[dead_series] == 1.0
    # A Dense without activation is not ReLU-family: no dead-unit series says 0 where the rule does not judge.
    assert 'layerscope_layer_dead_unit_fraction{layer="out",model="dead",version="1"}' not in samples
    assert samples['layerscope_layer_activation_rms{layer="dead",model="dead",version="1"}'] == 0.0
    findings = 'layerscope_model_findings{code="dead-units",model="dead",severity="warning",version="1"}'
    assert samples[findings] == 1
    counted = 'layerscope_findings_total{code="dead-units",model="dead",severity="warning"}'
    assert samples[counted] - before.get(counted, 0.0) == 1  # one diagnosis, one finding, counted once
    assert samples["layerscope_models_loaded"] - before["layerscope_models_loaded"] == 2

    client.unload_model("nan")
    after = scrape(server.metrics_url)
    assert not any(
        'model="nan"' in key and key.startswith(("layerscope_layer_", "layerscope_monitor_")) for key in after
    )
    assert dead_series in after


def wait_for_series(server: ServerHandle, series: tuple[str, ...], traffic: Callable[[], None]) -> None:
    """Send traffic until every series shows (the monitor adds a sample on its own thread, after the answer)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        traffic()
        if all(name in scrape(server.metrics_url) for name in series):
            return
        time.sleep(0.2)
    raise AssertionError(f"{series} did not appear")


def test_full_tensors_over_the_byte_limit_are_refused_naming_limit_and_size(
    client: Client, server: ServerHandle, tmp_path: Path
) -> None:
    client.upload_model("limited", models.save(models.small_cnn(), tmp_path))
    x = np.zeros((16, 8, 8, 1), "float32")
    with pytest.raises(ResourceExhaustedError) as caught:
        client.capture("limited", x, full="*", max_tensor_bytes=1000)
    assert "at most 1000 bytes" in caught.value.message
    full = client.capture("limited", x, full="*")
    size = sum(a.nbytes for kinds in full.tensors.values() for a in kinds.values())
    assert f"hold {size} bytes" in caught.value.message
    assert client.capture("limited", x, full="conv", kinds=("activation",)).tensors["conv"]["activation"].shape == (
        16,
        6,
        6,
        4,
    )
