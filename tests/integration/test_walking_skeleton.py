"""From a .keras file to a stored, diagnosed capture over gRPC, against a real server on a free port."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import grpc
import keras
import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.client import AlreadyExistsError, Client, InvalidArgumentError, NotFoundError
from layerscope.service.domain.summary import summarize
from tests.conftest import ServerHandle
from tests.support import models
from tests.support.metrics import scrape


@pytest.fixture(scope="module")
def cnn(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> keras.Model:
    model = models.small_cnn()
    path = models.save(model, tmp_path_factory.mktemp("archives"))
    with Client(server.target) as c:
        info = c.upload_model("cnn", path)
    assert (info.name, info.version) == ("cnn", 1)
    assert info.layers == ("conv", "pool", "flatten", "hidden", "probabilities")
    return model


def test_model_info_describes_each_layer_with_its_class_and_output_shape(client: Client, cnn: keras.Model) -> None:
    (info,) = [m for m in client.list_models() if m.name == "cnn"]
    described = {d.name: (d.class_name, d.output_shape, d.parameters) for d in info.layer_details}
    for layer in cnn.layers[1:]:
        assert described[layer.name] == (type(layer).__name__, tuple(layer.output.shape), layer.count_params())


def layer_outputs(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    probe = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    return {layer.name: np.asarray(out) for layer, out in zip(model.layers[1:], probe(x), strict=True)}


def test_full_capture_equals_what_keras_computes(client: Client, cnn: keras.Model) -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    x = rng.normal(size=(5, 8, 8, 1)).astype("float32")
    cap = client.capture("cnn", x, layers="*", kinds=("activation", "kernel", "bias"), full="*")

    expected = layer_outputs(cnn, x)
    assert set(cap.tensors) == set(expected)
    for name, activation in expected.items():
        np.testing.assert_allclose(cap.tensors[name]["activation"], activation, rtol=1e-5, atol=1e-6)
    for layer in (cnn.get_layer("conv"), cnn.get_layer("hidden"), cnn.get_layer("probabilities")):
        kernel, bias = layer.get_weights()
        np.testing.assert_array_equal(cap.tensors[layer.name]["kernel"], kernel)
        np.testing.assert_array_equal(cap.tensors[layer.name]["bias"], bias)
    np.testing.assert_allclose(cap.outputs["probabilities"], cnn(x), rtol=1e-5, atol=1e-6)


def test_summaries_equal_numpy_statistics_of_the_tensors(client: Client, cnn: keras.Model) -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    x = rng.normal(size=(7, 8, 8, 1)).astype("float32")
    cap = client.capture("cnn", x, full="*", kinds=("activation", "kernel", "bias"))
    for layer, kinds in cap.tensors.items():
        for kind, tensor in kinds.items():
            got, want = cap.summaries[layer][kind], summarize(tensor, per_unit=kind == "activation")
            assert got.count == want.count
            assert (got.nan, got.posinf, got.neginf) == (want.nan, want.posinf, want.neginf)
            np.testing.assert_allclose(
                [got.mean, got.std, got.min, got.max, got.zero_fraction],
                [want.mean, want.std, want.min, want.max, want.zero_fraction],
                rtol=1e-5,
                atol=1e-6,
            )
            assert sum(got.histogram) == sum(want.histogram) == want.count
            # Bin edges are float32 on the device: a value on an edge may land one bin over.
            assert np.abs(np.subtract(got.histogram, want.histogram)).sum() <= 2
            np.testing.assert_allclose(got.unit_activity, want.unit_activity, atol=1e-6)


def test_only_the_layers_asked_for_come_back_in_full(client: Client, cnn: keras.Model) -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    cap = client.capture("cnn", rng.normal(size=(2, 8, 8, 1)), full=["conv"])
    assert set(cap.tensors) == {"conv"}
    assert set(cap.summaries) == {"conv", "pool", "flatten", "hidden", "probabilities"}


def test_the_run_and_its_summaries_are_stored_once_the_call_returns(
    client: Client, cnn: keras.Model, server: ServerHandle
) -> None:
    """The answer waits for the run's spool file, not for the database: the writer stores it just after."""
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    from layerscope.service.errors import NotFound
    from layerscope.service.store.engine import create_engine
    from layerscope.service.store.sql_store import SqlRunStore

    cap = client.capture("cnn", rng.normal(size=(3, 8, 8, 1)).astype("float32"), run_id="skeleton-run-1")
    engine = create_engine(server.database_url)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                stored = SqlRunStore(engine).get_run("skeleton-run-1")
                break
            except NotFound:
                assert time.monotonic() < deadline, "the run writer did not store the run within 30 s"
                time.sleep(0.05)
    finally:
        engine.dispose()
    assert cap.run_id == stored.run_id == "skeleton-run-1"
    assert (stored.model_name, stored.model_version, stored.kind, stored.batch_size) == (
        "cnn",
        1,
        "capture",
        3,
    )
    stored_summaries = {(s.layer, s.kind): s.summary for s in stored.summaries}
    assert stored_summaries[("conv", "activation")].mean == pytest.approx(cap.summaries["conv"]["activation"].mean)
    assert len(stored_summaries) == sum(len(k) for k in cap.summaries.values())
    assert client.get_run("skeleton-run-1").summaries["hidden"]["kernel"].count == 36 * 6


def test_a_diagnosis_is_stored_with_its_findings(client: Client, server: ServerHandle, tmp_path: Path) -> None:
    client.upload_model("dead", models.save(models.dead_relu_model(), tmp_path))
    report = client.diagnose("dead", run_id="diagnosis-1")
    dead = report.by_code("dead-units")
    assert dead and dead[0].layers == ("dead",)
    assert "probe" in report.inputs_used
    stored = client.get_run("diagnosis-1")
    assert stored.kind == "diagnose"
    assert [f.code for f in stored.findings] == [f.code for f in report.findings]
    assert [r.run_id for r in client.runs("dead")] == ["diagnosis-1"]


def test_metrics_expose_rpc_counts_and_latency_by_method_and_code(
    client: Client, cnn: keras.Model, server: ServerHandle
) -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    ok, missing = '{code="OK",method="Predict"}', '{code="NOT_FOUND",method="Predict"}'
    before = scrape(server.metrics_url)
    client.predict("cnn", rng.normal(size=(1, 8, 8, 1)))
    with pytest.raises(NotFoundError):
        client.predict("no-such-model", rng.normal(size=(1, 8, 8, 1)))
    after = scrape(server.metrics_url)

    def grew(series: str) -> float:
        return after[series] - before.get(series, 0.0)

    assert grew(f"layerscope_rpcs_total{ok}") == 1 and grew(f"layerscope_rpcs_total{missing}") == 1
    assert grew(f"layerscope_rpc_duration_seconds_count{ok}") == 1
    assert grew(f"layerscope_rpc_duration_seconds_count{missing}") == 1
    assert grew(f"layerscope_rpc_duration_seconds_sum{ok}") > 0
    buckets = [k for k in after if k.startswith('layerscope_rpc_duration_seconds_bucket{code="OK",') and "Predict" in k]
    assert len(buckets) > 5 and max(grew(k) for k in buckets) == 1  # latency lands in the buckets too


# -- bad input: a clear error, the right status, and the server keeps serving ---------------------------


def still_serving(client: Client) -> None:
    assert client.health() == "SERVING"
    assert client.predict("cnn", np.zeros((1, 8, 8, 1), "float32"))["probabilities"].shape == (1, 3)


def test_an_unknown_model_is_not_found(client: Client, cnn: keras.Model) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.capture("ghost", np.zeros((1, 4)))
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert "ghost" in caught.value.message
    still_serving(client)


def test_a_wrong_input_shape_names_expected_and_received(client: Client, cnn: keras.Model) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.capture("cnn", np.zeros((2, 9, 8, 1), "float32"))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "(None, 8, 8, 1)" in caught.value.message and "(2, 9, 8, 1)" in caught.value.message
    still_serving(client)


def test_a_wrong_input_dtype_is_refused(client: Client, cnn: keras.Model) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.predict("cnn", np.zeros((1, 8, 8, 1), "uint8"))
    assert "expects dtype float32; received uint8" in caught.value.message
    with pytest.raises(InvalidArgumentError) as caught:
        client.predict("cnn", {"image": np.zeros((1, 8, 8, 1)), "extra": np.zeros((1, 2))})
    assert "['image']" in caught.value.message and "'extra'" in caught.value.message
    still_serving(client)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"run_id": "r" * 129}, "Expected a run id of at most 128 printable characters; received 129"),
        ({"run_id": "line\nbreak"}, "Expected a run id of at most 128 printable characters"),
        ({"max_tensor_bytes": -1}, "Expected max_tensor_bytes >= 0 (0: the server's limit); received -1"),
    ],
)
def test_capture_options_that_cannot_work_are_refused_before_any_work(
    client: Client, cnn: keras.Model, server: ServerHandle, options: dict[str, Any], expected: str
) -> None:
    before = stored_run_count(server)
    with pytest.raises(InvalidArgumentError, match=re.escape(expected)):
        client.capture("cnn", np.zeros((1, 8, 8, 1), "float32"), **options)
    assert stored_run_count(server) == before
    still_serving(client)


def stored_run_count(server: ServerHandle) -> int:
    with Client(server.target) as c:
        c.runs(limit=1)  # a listing waits for the run writer to catch up: no earlier run is still on its way
    engine = sa.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM run")).scalar_one())
    finally:
        engine.dispose()


def test_uploading_a_version_that_exists_is_already_exists_and_keeps_the_stored_one(
    client: Client, tmp_path: Path
) -> None:
    first = models.save(models.dead_relu_model(), tmp_path, "first")
    second = models.save(models.small_cnn(), tmp_path, "second")
    assert client.upload_model("versioned", first).version == 1
    with pytest.raises(AlreadyExistsError, match="Model 'versioned' already has version 1; expected a new version"):
        client.upload_model("versioned", second, version=1)
    assert client.predict("versioned", np.zeros((1, 4), "float32"), version=1)["out"].shape == (1, 2)
    assert client.upload_model("versioned", second, load=False).version == 2  # the next free one, unasked


def test_a_file_that_is_not_a_keras_archive_is_refused(client: Client, cnn: keras.Model, tmp_path: Path) -> None:
    path = tmp_path / "notes.keras"
    path.write_text("this is not a zip archive")
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model("notes", path)
    assert "zip" in caught.value.message.lower()
    with pytest.raises(NotFoundError):
        client.load_model("notes")  # nothing was left behind in the repository
    still_serving(client)


def test_a_lambda_layer_is_refused_and_never_executed(client: Client, cnn: keras.Model, tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = models.save(models.lambda_model(marker), tmp_path)
    marker.unlink(missing_ok=True)  # building the model ran the payload once, here in the test
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model("trojan", path)
    assert "Lambda" in caught.value.message
    assert not marker.exists()
    still_serving(client)


def test_summaries_come_in_the_header_for_clients_that_ask_and_as_before_for_older_ones(
    server: ServerHandle, cnn: keras.Model
) -> None:
    """Each stream message costs a small capture a round of the transport: today's client reads a summaries-only
    capture as one message (summaries in the header); the previous client (`batch_summaries` alone) reads a
    header and one message of summaries; older clients one message per summary. All read the same run."""
    from layerscope.client import _core
    from layerscope.v1 import inspector_pb2_grpc

    x = np.random.default_rng(3).random((4, 8, 8, 1)).astype("float32")
    request = _core.capture_request("cnn", x, "*", ("activation",), (), None, None, 0)
    assert request.summaries_in_header and request.batch_summaries, "the client asks for both"
    generations = {"today": (True, True), "previous": (True, False), "oldest": (False, False)}
    streams = {}
    with grpc.insecure_channel(server.target) as channel:
        stub = inspector_pb2_grpc.InspectorStub(channel)
        for generation, (batch, in_header) in generations.items():
            request.batch_summaries, request.summaries_in_header = batch, in_header
            streams[generation] = list(stub.Capture(request, timeout=60))
    points = len(cnn.layers) - 1  # every layer but the input
    kinds = {g: [m.WhichOneof("item") for m in stream] for g, stream in streams.items()}
    assert kinds == {
        "today": ["header"],
        "previous": ["header", "summaries"],
        "oldest": ["header"] + ["summary"] * points,
    }
    assert not streams["previous"][0].header.summaries.items, "a client that did not ask finds none in the header"
    captures = {}
    for generation, stream in streams.items():
        assembler = _core.CaptureAssembler()
        for message in stream:
            assembler.add(message)
        captures[generation] = assembler.result()
    today = captures["today"]
    assert len(today.summaries) == points
    for other in (captures["previous"], captures["oldest"]):
        assert other.summaries.keys() == today.summaries.keys()
        for layer in today.summaries:  # the same statistics every way (the model and inputs are the same)
            assert today.summaries[layer]["activation"].mean == pytest.approx(other.summaries[layer]["activation"].mean)
