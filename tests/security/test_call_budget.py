"""The work of a call: batch x what one sample declares, bounded before the model runs.

The declared-size budget is per sample; memory is per batch. On main a model within the per-layer bound (30 M
elements per sample) took one reader's Predict at batch 16 to 2 GB more, and the allowed batch of 1024 was
120 GB. Each loaded model now has a largest batch (published in ListModels), and Predict (sampled or not),
Capture, Diagnose and ModelInfer above it are refused with RESOURCE_EXHAUSTED naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest

from layerscope.client import Client, ResourceExhaustedError
from tests.conftest import ServerHandle, start_server
from tests.security.test_weightless_bombs import edited, layer
from tests.support import models
from tests.support.serve_process import serve_process

MIB = 1 << 20


def repeat(folder: Path, n: int, dtype: str = "float32", name: str = "repeat", free: bool = False) -> Path:
    """A weightless model whose one layer writes n x 4 values per sample (1 MiB at n = 65,536 in float32)."""
    x = keras.Input((None, 4) if free else (4,), name="x", dtype=dtype)
    flat = keras.layers.GlobalAveragePooling1D(name="pool", dtype=dtype)(x) if free else x
    out = keras.layers.RepeatVector(2, name="repeat", dtype=dtype)(flat)
    source = models.save(keras.Model(x, out, name=name), folder, name)
    return edited(source, lambda c: layer(c, "repeat")["config"].update(n=n))


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server whose calls may hold 4 MiB in one layer output and 64 MiB in all, sampling every Predict."""
    handle = start_server(
        tmp_path_factory.mktemp("bounded"),
        max_call_layer_bytes=4 * MIB,
        max_call_total_bytes=64 * MIB,
        monitor_sample_rate=1.0,
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(bounded: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("models")
    with Client(bounded.target, timeout=120) as c:
        c.upload_model("mib", repeat(folder, 65_536))  # 1 MiB per sample: 4 rows
        c.upload_model("mib64", repeat(folder, 65_536, "float64", "mib64"))  # 2 MiB per sample: 2 rows
        c.upload_model("healthy", models.save(models.dead_relu_model(), folder, "healthy"))
        yield c


def rows(n: int, dtype: str = "float32") -> np.ndarray:
    return np.ones((n, 4), dtype)


def test_each_model_publishes_the_largest_batch_it_accepts(client: Client) -> None:
    published = {m.name: m.max_batch_size for m in client.list_models()}
    assert published == {"mib": 4, "mib64": 2, "healthy": 1024}  # float64 holds twice the bytes: half the rows


@pytest.mark.parametrize("call", ["predict", "capture", "diagnose"])
def test_a_batch_past_it_is_refused_before_the_model_runs(client: Client, call: str) -> None:
    run = getattr(client, call)
    with pytest.raises(ResourceExhaustedError) as caught:
        run("mib", rows(5))
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    message = caught.value.message
    assert message.startswith("Expected a batch of at most 4 rows for model 'mib' version 1"), message
    assert "largest layer output 'repeat' declares 1048576 bytes per sample" in message, message
    assert "may hold 4194304 bytes (LAYERSCOPE_MAX_CALL_LAYER_BYTES); received 5." in message, message
    assert run("mib", rows(4)) is not None  # the batch it names is accepted


def test_float64_halves_the_batch(client: Client) -> None:
    with pytest.raises(ResourceExhaustedError, match="at most 2 rows for model 'mib64'"):
        client.predict("mib64", rows(3, "float64"))
    assert client.predict("mib64", rows(2, "float64"))["repeat"].nbytes == 2 * 2 * MIB


def test_a_sampled_predict_obeys_the_same_bound(client: Client) -> None:
    """Every Predict is sampled on this server (rate 1): the live capture path holds every layer's output."""
    before = client.monitor("mib").samples
    with pytest.raises(ResourceExhaustedError, match="at most 4 rows"):
        client.predict("mib", rows(5))
    client.predict("mib", rows(4))
    deadline = time.monotonic() + 30
    while client.monitor("mib").samples <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.monitor("mib").samples == before + 1  # the refused one was never sampled


def test_diagnose_without_inputs_probes_no_more_rows_than_the_model_accepts(client: Client) -> None:
    report = client.diagnose("mib")
    assert report.inputs_used.startswith("probe inputs: 4 rows per input"), report.inputs_used
    assert client.diagnose("healthy").inputs_used.startswith("probe inputs: 24 rows per input")


def test_free_dimensions_scale_the_work_by_what_the_caller_puts_in_them(
    bounded: ServerHandle, client: Client, tmp_path: Path
) -> None:
    """Declared sizes count a free dimension as 1: a call that fills it with 8 is 8 times the work."""
    client.upload_model("free", repeat(tmp_path, 65_536, free=True, name="free"))
    with pytest.raises(ResourceExhaustedError) as caught:
        client.predict("free", np.ones((1, 8, 4), "float32"))
    message = caught.value.message
    assert "Expected a batch of at most 4 rows of the declared input size for model 'free' version 1" in message
    assert "received 1 rows at 8 times the declared size, 0 rows at most." in message, message
    assert client.predict("free", np.ones((4, 1, 4), "float32"))["repeat"].shape == (4, 65_536, 4)


def test_all_layers_together_are_bounded_too(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_call_layer_bytes=1 << 40, max_call_total_bytes=3 * MIB)
    try:
        with Client(server.target, timeout=60) as c:
            info = c.upload_model("mib", repeat(tmp_path, 65_536))
            assert info.max_batch_size == 2  # 1 MiB + 16 bytes of input per sample
            with pytest.raises(ResourceExhaustedError) as caught:
                c.predict("mib", rows(3))
            assert "its layer outputs declare 1048592 bytes per sample in all" in caught.value.message
            assert "(LAYERSCOPE_MAX_CALL_TOTAL_BYTES); received 3." in caught.value.message
    finally:
        server.stop()


def test_a_model_no_call_could_run_is_refused_at_upload(bounded: ServerHandle, client: Client, tmp_path: Path) -> None:
    with pytest.raises(Exception) as caught:
        client.upload_model("toolarge", repeat(tmp_path, 4 * 65_536 + 1, name="toolarge"))
    message = getattr(caught.value, "message", str(caught.value))
    assert "Expected a model that one call can run on at least one sample; received one that cannot:" in message
    assert "toolarge" not in {m.name for m in client.list_models()}


def test_the_bombs_batch_is_refused_on_a_default_server_before_it_allocates(tmp_path: Path) -> None:
    """The issue's case, with the default bounds: 30 M elements per sample (within the per-layer bound), then
    a reader's Predict at batch 16. Refused naming 8, and the server's memory does not move."""
    with (
        serve_process(tmp_path, env={"LAYERSCOPE_ISOLATED_LOADING": "false"}) as server,
        Client(server.target, timeout=120) as c,
    ):
        info = c.upload_model("bomb", repeat(tmp_path, 7_500_000, name="bomb"))
        assert info.max_batch_size == 8  # 1 GiB per layer output of a call / 120 MB per sample
        before = server.rss_bytes()
        started = time.perf_counter()
        with pytest.raises(ResourceExhaustedError, match=r"at most 8 rows for model 'bomb' version 1"):
            c.predict("bomb", rows(16))
        assert time.perf_counter() - started < 5
        assert server.rss_bytes() - before < 100 * MIB
        assert c.health() == "SERVING"


def test_a_worker_publishes_and_obeys_the_same_bound(tmp_path: Path) -> None:
    """With model workers on, what the worker measured at load is what the server publishes and applies."""
    server = start_server(tmp_path, model_workers=True, max_call_layer_bytes=4 * MIB)
    try:
        with Client(server.target, timeout=120) as c:
            assert c.upload_model("mib", repeat(tmp_path, 65_536)).max_batch_size == 4
            with pytest.raises(ResourceExhaustedError, match="at most 4 rows for model 'mib'"):
                c.predict("mib", rows(5))
            assert c.predict("mib", rows(4))["repeat"].shape == (4, 65_536, 4)
    finally:
        server.stop()
