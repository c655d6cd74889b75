"""Weightless resource bombs: archives of a few KB whose config declares gigabytes or minutes of work.

Each is refused from its config, before Keras loads it, quickly, naming the bound; the server (its own
process here, so its memory is its own) stays small and healthy.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import keras
import numpy as np
import pytest

from layerscope.client import Client, InvalidArgumentError
from tests.security.test_hostile_models import rewrite
from tests.support import models
from tests.support.serve_process import ServeProcess, serve_process

Config = dict[str, Any]


def functional(folder: Path, name: str, build: Callable[[keras.KerasTensor], keras.KerasTensor]) -> Path:
    x = keras.Input((4,), name="x")
    return models.save(keras.Model(x, build(x), name=name), folder, name)


def edited(source: Path, edit: Callable[[Config], None]) -> Path:
    def apply(members: dict[str, bytes]) -> None:
        config = json.loads(members["config.json"])
        edit(config)
        members["config.json"] = json.dumps(config).encode()

    return rewrite(source, source.with_name(f"bomb-{source.name}"), apply)


def layer(config: Config, name: str) -> Config:
    return next(item for item in config["config"]["layers"] if item["name"] == name)


def repeat_vector_bomb(folder: Path) -> Path:
    """50 million copies of each row: 800 MB per sample at the first Predict."""
    source = functional(folder, "repeat", lambda x: keras.layers.RepeatVector(2, name="repeat")(x))
    return edited(source, lambda c: layer(c, "repeat")["config"].update(n=50_000_000))


def stateful_repeat_bomb(folder: Path) -> Path:
    """A stateful recurrent layer (whose state Keras creates from concrete zeros, which a stateless rebuild
    forbids) and then 500 million copies of its output: 2 GB per sample at the first Predict. Before round
    three the budget could not rebuild it, measured nothing and let it through."""

    def build(x: keras.KerasTensor) -> keras.KerasTensor:
        h = keras.layers.SimpleRNN(1, stateful=True, name="rnn")(keras.layers.Reshape((4, 1), name="steps")(x))
        return keras.layers.RepeatVector(2, name="repeat")(h)

    x = keras.Input((4,), batch_size=1, name="x")
    source = models.save(keras.Model(x, build(x), name="stateful"), folder, "stateful")
    return edited(source, lambda c: layer(c, "repeat")["config"].update(n=500_000_000))


def dense_bomb(folder: Path) -> Path:
    """A hundred million units: 1.6 GB of kernel allocated while Keras loads it."""
    source = functional(folder, "dense", lambda x: keras.layers.Dense(2, name="wide")(x))
    return edited(source, lambda c: layer(c, "wide")["config"].update(units=100_000_000))


def wide_input_bomb(folder: Path) -> Path:
    """Ten million features: what a Diagnose probe (or any caller's batch) would allocate."""
    source = functional(folder, "input", lambda x: keras.layers.Dense(2, name="head")(x))

    def widen(config: Config) -> None:
        layer(config, "x")["config"]["batch_shape"] = [None, 10_000_000]
        head = layer(config, "head")
        head["build_config"]["input_shape"] = [None, 10_000_000]
        head["inbound_nodes"][0]["args"][0]["config"]["shape"] = [None, 10_000_000]

    return edited(source, widen)


def parallel_bomb(folder: Path) -> Path:
    """1,500 parallel layers (under the scanner's 5,000 serialized objects): graph building at load and at
    every new input shape takes many seconds of a shared CPU."""
    source = functional(folder, "parallel", lambda x: keras.layers.Activation("relu", name="p0")(x))

    def fan_out(config: Config) -> None:
        template = layer(config, "p0")
        for i in range(1, 1500):
            clone = copy.deepcopy(template)
            clone["name"] = clone["config"]["name"] = f"p{i}"
            config["config"]["layers"].append(clone)
        config["config"]["output_layers"] = [[f"p{i}", 0, 0] for i in range(1500)]

    return edited(source, fan_out)


BOMBS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "repeat-vector-5e7": (repeat_vector_bomb, "received layer 'repeat' declaring 200000000 float32 elements"),
    "stateful-repeat-5e8": (stateful_repeat_bomb, "received layer 'repeat' declaring 500000000 float32 elements"),
    "dense-1e8": (dense_bomb, "250000000 parameters (of float32: 1000000000 bytes); received one declaring 500000000"),
    "input-1e7": (wide_input_bomb, "(of float32: 16777216 bytes); received input 'x' declaring 10000000 float32"),
    "parallel-1500": (parallel_bomb, "at most 1000 layers; received one declaring 1501"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("bombs"), env={"LAYERSCOPE_ISOLATED_LOADING": "false"}) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Client(server.target, timeout=60) as c:
        c.upload_model("healthy", models.save(models.dead_relu_model(), tmp_path_factory.mktemp("ok"), "healthy"))
        yield c


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_weightless_bombs_are_refused_from_the_config_before_loading(
    case: str, server: ServeProcess, client: Client, tmp_path: Path
) -> None:
    build, expected = BOMBS[case]
    archive = build(tmp_path)
    assert archive.stat().st_size < 512 * 1024  # weightless: nothing for the archive checks to see
    before = server.rss_bytes()
    started = time.perf_counter()
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model(case.replace(".", "-"), archive)
    elapsed = time.perf_counter() - started
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected" in caught.value.message and expected in caught.value.message, caught.value.message
    assert elapsed < 20, f"refusing took {elapsed:.1f} s"
    assert server.rss_bytes() - before < 200 * 1024 * 1024  # nothing the bomb declared was allocated
    assert client.health() == "SERVING"
    assert client.predict("healthy", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
