"""Start-up scales with the models: the server says SERVING as soon as it can answer, the repository's models
load a few at once behind it, and the standard health service tells which are still loading
(`layerscope.model.<name>`) and when all are (`layerscope.models`)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerscope.client import Client, NotFoundError, UnavailableError
from layerscope.oip import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from tests.conftest import ServerHandle, start_server
from tests.support import models
from tests.support.metrics import scrape

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def repository_of(tmp: Path, count: int) -> list[str]:
    """`count` tiny real Keras models (an MLP and a CNN in turn) as m0..m<count-1>, version 1 each."""
    archives = [models.save(models.dead_relu_model(), tmp), models.save(models.small_cnn(), tmp)]
    names = [f"m{i}" for i in range(count)]
    for i, name in enumerate(names):
        folder = tmp / "repository" / name / "1"
        folder.mkdir(parents=True)
        shutil.copy(archives[i % 2], folder / "model.keras")
    return names


def inputs_of(name: str) -> np.ndarray:
    shape = (2, 4) if int(name[1:]) % 2 == 0 else (2, 8, 8, 1)
    return np.zeros(shape, "float32")


@contextmanager
def watching(target: str, services: list[str]) -> Iterator[dict[str, Future[list[int]]]]:
    """Watch each health service from now on; each future holds the statuses it went through, up to SERVING."""
    channel = grpc.insecure_channel(target)
    stub = health_pb2_grpc.HealthStub(channel)
    seen: dict[str, Future[list[int]]] = {name: Future() for name in services}

    def watch(name: str) -> None:
        statuses: list[int] = []
        try:
            for reply in stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=300):
                statuses.append(reply.status)
                if reply.status == SERVING:
                    break
            seen[name].set_result(statuses)
        except grpc.RpcError as err:
            seen[name].set_exception(err)

    threads = [threading.Thread(target=watch, args=(name,), daemon=True) for name in services]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        channel.close()


def timed_start(tmp: Path, **settings: object) -> tuple[ServerHandle, float]:
    began = time.perf_counter()
    server = start_server(tmp, wait_for_models=False, **settings)
    return server, time.perf_counter() - began


def server_ready(target: str) -> bool:
    """The Open Inference Protocol's ServerReady, as KServe and Triton clients ask it."""
    with grpc.insecure_channel(target) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        return bool(stub.ServerReady(grpc_predict_v2_pb2.ServerReadyRequest(), timeout=30).ready)


def wait_for_models(server: ServerHandle) -> list[str]:
    loaded = asyncio.run_coroutine_threadsafe(server.app.models_loaded(), server.loop).result(timeout=300)
    return sorted(m.name for m in loaded)


def test_many_models_load_behind_serving_each_with_its_own_health_until_all_are_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record_property: pytest.RecordProperty
) -> None:
    names = repository_of(tmp_path, 8)
    caplog.set_level(logging.INFO)
    began = time.perf_counter()
    server, to_serving = timed_start(tmp_path, load_concurrency=2)
    try:
        with (
            Client(server.target, timeout=120) as c,
            watching(server.target, ["layerscope.models", *(f"layerscope.model.{n}" for n in names)]) as seen,
        ):
            assert c.health() == "SERVING"  # the server answers while its models load
            last = names[-1]  # loads last: a call for it now is UNAVAILABLE naming the load (retry), never NOT_FOUND
            try:
                assert c.predict(last, inputs_of(last))  # the client retried a few times, the load may have ended
            except UnavailableError as exc:
                assert f"Expected a loaded model '{last}'; received a call while it is still loading" in exc.message
            assert wait_for_models(server) == names
            to_models = time.perf_counter() - began
            statuses = {name: future.result(timeout=60) for name, future in seen.items()}
            assert all(s[-1] == SERVING for s in statuses.values()), statuses
            assert statuses["layerscope.models"][-1] == SERVING  # NOT_SERVING before: the log order below proves it
            assert any(s[0] == NOT_SERVING for name, s in statuses.items() if name != "layerscope.models"), (
                "per-model readiness: models still loading when the watch began say NOT_SERVING first"
            )
            assert {c.health(f"layerscope.model.{n}") for n in names} == {"SERVING"}
            with pytest.raises(NotFoundError):  # a name the repository never held is unknown, not NOT_SERVING
                c.health("layerscope.model.absent")
            assert sorted(m.name for m in c.list_models()) == names
        metrics = scrape(server.metrics_url)
    finally:
        server.stop()
    assert all(metrics[f'layerscope_model_load_seconds{{model="{n}",version="1"}}'] > 0 for n in names)
    assert (
        0 < metrics['layerscope_start_seconds{phase="serving"}'] <= metrics['layerscope_start_seconds{phase="models"}']
    )
    messages = [r.getMessage() for r in caplog.records]
    serving_line = next(i for i, m in enumerate(messages) if m.startswith("SERVING"))
    loaded_lines = [i for i, m in enumerate(messages) if " loaded in " in m]
    assert len(loaded_lines) == 8 and serving_line < min(loaded_lines), "SERVING is said before the first load ends"
    assert "loading 8 models, 2 at once" in messages[serving_line]
    record_property("seconds_to_serving", round(to_serving, 2))
    record_property("seconds_to_all_models", round(to_models, 2))
    print(f"8 models, workers off: SERVING after {to_serving:.2f}s, all models SERVING after {to_models:.2f}s")


def test_with_model_workers_the_models_load_into_workers_behind_serving(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    names = repository_of(tmp_path, 3)
    began = time.perf_counter()
    server, to_serving = timed_start(tmp_path, model_workers=True, load_concurrency=2)
    try:
        with (
            Client(server.target, timeout=300) as c,
            watching(server.target, [f"layerscope.model.{n}" for n in names]) as seen,
        ):
            assert c.health() == "SERVING"
            assert c.health("layerscope.models") == "NOT_SERVING", "a worker's start takes seconds"
            assert not server_ready(server.target), "OIP ServerReady waits for the models, as Triton's does"
            assert wait_for_models(server) == names
            assert server_ready(server.target)
            to_models = time.perf_counter() - began
            assert all(f.result(timeout=60)[-1] == SERVING for f in seen.values())
            for name in names:
                assert c.predict(name, inputs_of(name))
        metrics = scrape(server.metrics_url)
    finally:
        server.stop()
    assert all(metrics[f'layerscope_model_load_seconds{{model="{n}",version="1"}}'] > 0 for n in names)
    record_property("seconds_to_serving", round(to_serving, 2))
    record_property("seconds_to_all_models", round(to_models, 2))
    print(f"3 models, workers on: SERVING after {to_serving:.2f}s, all models SERVING after {to_models:.2f}s")
