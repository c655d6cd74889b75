"""What a reader may ask of a capture: bounded patterns, names that exist, sizes known before running,
and a server-side deadline that ends the call whatever deadline the client set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest

from layerscope.client import Client, DeadlineExceededError, InvalidArgumentError, ResourceExhaustedError
from tests.conftest import ServerHandle, start_server
from tests.support import models

X = np.zeros((2, 4), "float32")


@pytest.fixture(scope="module")
def reader(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("reader")
    x = keras.Input((64,), name="x")
    wide = keras.Model(x, keras.layers.Dense(1, name="out")(keras.layers.Dense(4096, name="wide")(x)), name="w")
    with Client(server.target, timeout=60) as c:
        c.upload_model("healthy", models.save(models.dead_relu_model(), folder, "healthy"))
        c.upload_model("wide", models.save(wide, folder, "wide"))
        yield c


def test_a_hundred_thousand_patterns_are_refused_at_once(reader: Client) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as caught:
        reader.capture("healthy", X, layers=[f"layer{i}*" for i in range(100_000)])
    assert time.perf_counter() - started < 5
    assert "Expected at most 256 `layers` patterns; received 100000." in caught.value.message


def test_a_long_pattern_is_refused(reader: Client) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        reader.capture("healthy", X, full=["*" * 5000])
    assert "`full` patterns of at most 256 characters; received one of 5000" in caught.value.message


def test_many_patterns_are_matched_once_each_not_per_layer(reader: Client) -> None:
    patterns = ["dead", "out", *(f"dead{i}?" for i in range(250))]
    with pytest.raises(InvalidArgumentError):  # 250 of them name no layer
        reader.capture("healthy", X, layers=patterns)
    started = time.perf_counter()
    capture = reader.capture("healthy", X, layers=["d*", "o*", *(f"*{c}*" for c in "do" * 100)])
    assert {"dead", "out"} <= set(capture.summaries)
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    ("layers", "full", "expected"),
    [
        (["nope"], (), "`layers` patterns that name layers of the model; received ['nope'], which match none"),
        (["dea"], (), "close matches: ['dead']"),
        ("*", ["nope"], "`full` patterns that name layers of the model; received ['nope']"),
        (["dead"], ["out"], "`full` layers among the selected `layers` ['dead']; received ['out'] outside them"),
    ],
)
def test_unknown_layer_names_are_refused_with_close_matches(
    reader: Client, layers: list[str], full: list[str], expected: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        reader.capture("healthy", X, layers=layers, full=full)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.message, caught.value.message


def test_full_tensors_too_large_by_their_shapes_are_refused_before_the_model_is_traced(
    reader: Client, server: ServerHandle
) -> None:
    engine = server.app.inspector._models.get(_ref("wide")).engine
    traces = engine.traces
    with pytest.raises(ResourceExhaustedError) as caught:
        reader.capture("wide", np.zeros((64, 64), "float32"), full="*", max_tensor_bytes=1 << 20)
    assert "Expected full tensors of at most 1048576 bytes per capture" in caught.value.message
    assert engine.traces == traces  # sized from the declared shapes: nothing traced, nothing run


def test_every_call_has_a_server_side_deadline(tmp_path: Path) -> None:
    handle = start_server(tmp_path, call_timeout_seconds=0.2)
    try:
        x = keras.Input((32,), name="x")
        h = x
        for i in range(60):  # tracing 60 layers takes well over 0.2 s
            h = keras.layers.Dense(32, activation="relu", name=f"d{i}")(h)
        with Client(handle.target, timeout=60) as c:
            c.upload_model("deep", models.save(keras.Model(x, h, name="deep"), tmp_path, "deep"))
            started = time.perf_counter()
            with pytest.raises(DeadlineExceededError) as caught:
                c.capture("deep", np.zeros((2, 32), "float32"), statistics="exact")
            assert time.perf_counter() - started < 5
            assert "within the server's deadline of 0.2 s" in caught.value.message
            assert c.health() == "SERVING"
    finally:
        handle.stop()


def _ref(name: str) -> object:
    from layerscope.service.domain.models import ModelRef

    return ModelRef(name, None)
