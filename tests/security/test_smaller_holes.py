"""The smaller holes: string inputs, huge ids echoed back, reflection streams, /metrics' address, and the
outputs a Capture header carries."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from layerscope.client import (
    Client,
    InvalidArgumentError,
    LayerscopeError,
    NotFoundError,
    ResourceExhaustedError,
)
from tests.conftest import ServerHandle, start_server
from tests.support import models

HUGE = "r" * (1 << 20)


@pytest.fixture(scope="module")
def uploaded(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("smaller")
    text = keras.Input((1,), dtype="string", name="text")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(text)
    strings = keras.Model(text, keras.layers.Dense(2, name="out")(keras.ops.cast(ids, "float32")), name="strings")
    x = keras.Input((4,), name="x")
    wide = keras.Model(x, keras.layers.Dense(4096, name="out")(x), name="wide_out")
    with Client(server.target, timeout=60) as c:
        c.upload_model("strings", models.save(strings, folder, "strings"))
        c.upload_model("wide-out", models.save(wide, folder, "wide-out"))
        c.upload_model("healthy", models.save(models.dead_relu_model(), folder, "healthy"))
        yield c


@pytest.mark.parametrize("call", ["predict", "capture", "diagnose"])
def test_a_model_taking_strings_is_refused_as_invalid_argument_not_internal(uploaded: Client, call: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        if call == "diagnose":
            uploaded.diagnose("strings")
        else:
            getattr(uploaded, call)("strings", np.zeros((1, 1), "float32"))
    assert "input 'text' takes string, which no tensor on the wire holds" in caught.value.message


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.capture("healthy", np.zeros((1, 4), "float32"), run_id=HUGE), InvalidArgumentError),
        (lambda c: c.get_run(HUGE), NotFoundError),
        (lambda c: c.runs_page(page_token=HUGE), InvalidArgumentError),
        (lambda c: c.compare(HUGE, ""), InvalidArgumentError),
        (lambda c: c.predict("m" * (1 << 20), np.zeros((1, 4), "float32")), NotFoundError),
    ],
    ids=["run-id", "get-run", "page-token", "compare", "model-name"],
)
def test_a_megabyte_id_is_echoed_as_a_short_prefix(uploaded: Client, call, error: type[LayerscopeError]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        call(uploaded)
    assert len(caught.value.message) < 1024, len(caught.value.message)


def test_the_header_s_outputs_count_against_max_tensor_bytes(uploaded: Client) -> None:
    with pytest.raises(ResourceExhaustedError) as caught:  # 64 x 4096 float32 outputs: 1 MiB
        uploaded.capture("wide-out", np.zeros((64, 4), "float32"), max_tensor_bytes=100_000)
    assert "at most 100000 bytes per capture" in caught.value.message
    assert "and the model's outputs (in the header) 1048576 more" in caught.value.message


def test_reflection_streams_have_a_pool_of_their_own(server: ServerHandle) -> None:
    release = threading.Event()

    def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait(30)

    channels = [grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(3)]
    try:
        streams = [
            reflection_pb2_grpc.ServerReflectionStub(channels[i % 3]).ServerReflectionInfo(requests(), timeout=30)
            for i in range(12)
        ]
        answered = refused = 0
        for stream in streams:
            try:
                next(stream)
                answered += 1
            except grpc.RpcError as err:
                assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "Expected at most 8 reflection streams in flight" in (err.details() or "")
                refused += 1
        assert (answered, refused) == (8, 4)
        with Client(server.target) as c:
            assert c.health() == "SERVING" and c.list_models()
    finally:
        release.set()
        for channel in channels:
            channel.close()


def test_metrics_bind_their_own_address(tmp_path: Path) -> None:
    handle = start_server(tmp_path, metrics_host="127.0.0.2")
    try:
        port = handle.app.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10) as response:
            assert b"layerscope_rpcs_total" in response.read() or response.status == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        handle.stop()
