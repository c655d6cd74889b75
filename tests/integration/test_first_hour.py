"""What a new user meets first, against a real server on free ports: health Watch, the metrics port,
comparing runs, and wrapper layers' weights over gRPC."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerscope.client import Client, InvalidArgumentError
from tests.conftest import ServerHandle, start_server
from tests.support import models
from tests.support.metrics import scrape


def test_health_watch_streams_the_serving_status(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        first = next(stream)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()

    samples = _wait_for(server, 'layerscope_rpcs_total{code="CANCELLED",method="Watch"}')
    assert 'layerscope_rpcs_total{code="INTERNAL",method="Watch"}' not in samples
    with Client(server.target) as c:  # the server keeps serving
        assert c.health() == "SERVING"


def test_health_watchers_take_no_slot_of_the_concurrency_limit(tmp_path: Path) -> None:
    small = start_server(tmp_path, max_concurrent_rpcs=1)
    try:
        with grpc.insecure_channel(small.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watches = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30) for _ in range(3)]
            assert [next(w).status for w in watches] == [health_pb2.HealthCheckResponse.SERVING] * 3
            with Client(small.target) as c:  # three watchers open, and the one slot is still free
                assert c.list_models() == []
            for w in watches:
                w.cancel()
    finally:
        small.stop()


def _wait_for(server: ServerHandle, series: str) -> dict[str, float]:
    """The watcher's end is counted when the server sees the cancellation, a moment after the client."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server.metrics_url)
        if series in samples or time.monotonic() > deadline:
            assert series in samples, sorted(s for s in samples if "Watch" in s)
            return samples
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/v2/health/ready", "/healthz", "/metrics/extra"])
def test_the_metrics_port_answers_404_off_the_metrics_path(server: ServerHandle, path: str) -> None:
    base = server.metrics_url.removesuffix("/metrics")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + path, timeout=10)
    assert refused.value.code == 404
    assert "Expected /metrics" in refused.value.read().decode()


def test_the_metrics_port_serves_metrics_on_metrics_and_root(server: ServerHandle) -> None:
    base = server.metrics_url.removesuffix("/metrics")
    for path in ("/metrics", "/"):
        with urllib.request.urlopen(base + path, timeout=10) as answer:
            assert answer.status == 200
            assert "layerscope_rpcs_total" in answer.read().decode()


@pytest.fixture(scope="module")
def two_models(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("first_hour")
    with Client(server.target) as c:
        c.upload_model("fh_cnn", models.save(models.small_cnn(), folder, "cnn"))
        c.upload_model("fh_dead", models.save(models.dead_relu_model(), folder, "dead"))


def test_compare_across_two_models_is_refused_naming_both(client: Client, two_models: None) -> None:
    rng = np.random.default_rng(0)
    a = client.capture("fh_cnn", rng.normal(size=(2, 8, 8, 1)).astype("float32")).run_id
    b = client.capture("fh_dead", rng.normal(size=(2, 4)).astype("float32")).run_id
    with pytest.raises(InvalidArgumentError, match="Expected two runs of one model") as refused:
        client.compare(a, b)
    assert "'fh_cnn'" in refused.value.message and "'fh_dead'" in refused.value.message
    assert client.compare(a, client.capture("fh_cnn", rng.normal(size=(2, 8, 8, 1)).astype("float32")).run_id)


def bidirectional_model() -> keras.Model:
    keras.utils.set_random_seed(5)
    x = keras.Input((5, 3), name="sequence")
    y = keras.layers.Bidirectional(keras.layers.LSTM(4, name="lstm"), name="bi")(x)
    return keras.Model(x, keras.layers.Dense(2, name="head")(y), name="bi_model")


def test_a_bidirectional_lstm_streams_both_directions_weights(client: Client, tmp_path: Path) -> None:
    model = bidirectional_model()
    client.upload_model("fh_bi", models.save(model, tmp_path))
    cap = client.capture("fh_bi", np.zeros((2, 5, 3), "float32"), layers="bi", kinds=("kernel", "bias"), full="bi")

    bi = model.get_layer("bi")
    expected = {
        "forward_lstm/kernel": bi.forward_layer.cell.kernel,
        "forward_lstm/recurrent_kernel": bi.forward_layer.cell.recurrent_kernel,
        "backward_lstm/kernel": bi.backward_layer.cell.kernel,
        "backward_lstm/recurrent_kernel": bi.backward_layer.cell.recurrent_kernel,
    }
    for kind, variable in expected.items():
        np.testing.assert_array_equal(cap.tensors["bi"][kind], variable.numpy())
    assert set(cap.summaries["bi"]) == {*expected, "forward_lstm/bias", "backward_lstm/bias"}
    stored = client.get_run(cap.run_id)
    assert set(stored.summaries["bi"]) == set(cap.summaries["bi"])


def cli(*args: str, columns: int = 80) -> str:
    from typer.testing import CliRunner

    from layerscope.cli.app import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_runs_and_compare_as_json_for_scripts(client: Client, server: ServerHandle, two_models: None) -> None:
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype("float32")
    a = client.capture("fh_cnn", x, run_id="fh-json-a").run_id
    b = client.diagnose("fh_cnn", run_id="fh-json-b").run_id
    page = json.loads(cli("runs", "fh_cnn", "--limit", "2", "--format", "json", "--server", server.target))
    assert [r["run_id"] for r in page["runs"]] == [b, a]
    assert page["runs"][0]["model"] == "fh_cnn" and page["runs"][0]["kind"] == "diagnose"
    assert page["next_page_token"]
    diff = json.loads(cli("compare", a, b, "--format", "json", "--server", server.target))
    assert (diff["run_a"], diff["run_b"]) == (a, b)
    assert {c["layer"] for c in diff["changes"]} >= {"conv", "hidden", "probabilities"}


def test_runs_and_compare_fit_80_columns_with_whole_ids_and_a_plain_page_token(
    client: Client, server: ServerHandle, two_models: None
) -> None:
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 1)).astype("float32")
    a, b = (client.capture("fh_cnn", x * scale).run_id for scale in (1.0, 3.0))
    listed = cli("runs", "fh_cnn", "--limit", "1", "--server", server.target)
    assert all(len(line) <= 80 for line in listed.splitlines() if "--page-token" not in line), listed
    assert b in listed and "\x1b[" not in listed
    (token_line,) = [line for line in listed.splitlines() if "--page-token" in line]
    token = token_line.split("--page-token ", 1)[1]
    assert a in cli("runs", "fh_cnn", "--limit", "1", "--page-token", token, "--server", server.target)

    compared = cli("compare", a, b, "--server", server.target)
    assert all(len(line) <= 80 for line in compared.splitlines()), compared
    assert "probabilities" in compared and "activation" in compared and "…" not in compared
