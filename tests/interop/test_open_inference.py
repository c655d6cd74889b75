"""The Open Inference Protocol (KServe v2) beside layerscope's own service, for existing clients."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from layerscope.client import Client
from layerscope.oip import grpc_predict_v2_pb2 as pb
from layerscope.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.conftest import ServerHandle
from tests.support import models

ROOT = Path(__file__).resolve().parents[2]
TRITON_ENV = ROOT / ".venv-tritonclient"
"""tritonclient's own environment, created once and reused (git-ignored)."""
TRITON_REQUIREMENTS = ("tritonclient[grpc]~=2.73", "numpy")
X = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")


@pytest.fixture(scope="module")
def stub(server: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with Client(server.target) as c:
        c.upload_model("oip", models.save(models.small_cnn(), tmp_path_factory.mktemp("oip")))
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def expected(stub: pb_grpc.GRPCInferenceServiceStub, server: ServerHandle) -> np.ndarray:
    with Client(server.target) as c:
        result: np.ndarray = c.predict("oip", X)["probabilities"]
    return result


def test_liveness_readiness_and_server_metadata(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "layerscope" and meta.version
    assert stub.ModelReady(pb.ModelReadyRequest(name="oip")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="oip", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="oip", version="7")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="ghost")).ready


def test_model_metadata_uses_kserve_datatypes_and_minus_one_for_free_dims(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="oip"))
    assert (meta.name, list(meta.versions), meta.platform) == ("oip", ["1"], "tensorflow_keras")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("image", "FP32", [-1, 8, 8, 1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("probabilities", "FP32", [-1, 3])]


def infer(stub: pb_grpc.GRPCInferenceServiceStub, raw: bool, version: str = "") -> np.ndarray:
    request = pb.ModelInferRequest(model_name="oip", model_version=version, id="r1")
    tensor = request.inputs.add(name="image", datatype="FP32", shape=list(X.shape))
    if raw:
        request.raw_input_contents.append(X.tobytes())
    else:
        tensor.contents.fp32_contents.extend(X.ravel().tolist())
    request.outputs.add(name="probabilities")
    response = stub.ModelInfer(request)
    assert (response.model_name, response.model_version, response.id) == ("oip", "1", "r1")
    [output] = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("probabilities", "FP32", [3, 3])
    return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(tuple(output.shape))


@pytest.mark.parametrize(("raw", "version"), [(True, ""), (False, ""), (True, "1")])
def test_model_infer_equals_predict(
    stub: pb_grpc.GRPCInferenceServiceStub, expected: np.ndarray, raw: bool, version: str
) -> None:
    np.testing.assert_allclose(infer(stub, raw, version), expected, rtol=1e-5, atol=1e-6)


def set_int_contents(r: pb.ModelInferRequest) -> None:
    r.ClearField("raw_input_contents")
    r.inputs[0].datatype = "INT32"
    r.inputs[0].contents.int_contents.extend([0] * X.size)


@pytest.mark.parametrize(
    ("edit", "code", "message"),
    [
        (lambda r: setattr(r, "model_name", "ghost"), grpc.StatusCode.NOT_FOUND, "'ghost'"),
        (lambda r: setattr(r, "model_version", "7"), grpc.StatusCode.NOT_FOUND, "version 7"),
        (lambda r: setattr(r, "model_version", "latest"), grpc.StatusCode.INVALID_ARGUMENT, "'latest'"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 12), grpc.StatusCode.INVALID_ARGUMENT, "received 12"),
        (lambda r: setattr(r.inputs[0], "datatype", "BF16"), grpc.StatusCode.INVALID_ARGUMENT, "'BF16'"),
        (lambda r: r.outputs.add(name="logits"), grpc.StatusCode.INVALID_ARGUMENT, "['logits']"),
        (set_int_contents, grpc.StatusCode.INVALID_ARGUMENT, "expects dtype float32; received int32"),
        (
            lambda r: (r.inputs[0].shape.__setitem__(1, 4), r.raw_input_contents.__setitem__(0, X[:, :4].tobytes())),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects shape (None, 8, 8, 1); received (3, 4, 8, 1)",
        ),
    ],
)
def test_bad_infer_requests_get_the_right_status(
    stub: pb_grpc.GRPCInferenceServiceStub,
    edit: Callable[[pb.ModelInferRequest], object],
    code: grpc.StatusCode,
    message: str,
) -> None:
    request = pb.ModelInferRequest(model_name="oip")
    request.inputs.add(name="image", datatype="FP32", shape=list(X.shape))
    request.raw_input_contents.append(X.tobytes())
    edit(request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request)
    assert caught.value.code() == code, caught.value.details()
    assert message in caught.value.details()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.ModelMetadataRequest(name="ghost"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelMetadataRequest(name="oip", version="7"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelMetadataRequest(name=""), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_metadata_of_a_model_that_is_not_loaded_is_not_found(
    stub: pb_grpc.GRPCInferenceServiceStub, request_: pb.ModelMetadataRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(request_)
    assert caught.value.code() == code, caught.value.details()


def triton_python() -> Path:
    """tritonclient pins protobuf < 7, so it lives in its own environment, as a user's client process would.

    Built once under a lock (parallel test runs share it); the `.ready` marker is written only after pip
    succeeded, so an interrupted install is redone rather than reused.
    """
    python, ready = TRITON_ENV / "bin" / "python", TRITON_ENV / ".ready"
    TRITON_ENV.mkdir(exist_ok=True)
    with open(TRITON_ENV / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return python
        try:
            subprocess.run([sys.executable, "-m", "venv", str(TRITON_ENV)], check=True, capture_output=True, text=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *TRITON_REQUIREMENTS],
                check=True, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit status {exc.returncode}"]
            reason = f"could not install {' '.join(TRITON_REQUIREMENTS)} (no network?): {last[0]}"
        except subprocess.TimeoutExpired:
            reason = f"installing {' '.join(TRITON_REQUIREMENTS)} took over 600 s (no network?)"
        else:
            ready.touch()
            return python
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.timeout(780)  # the client's install (600 s at most) and its script (120 s), beyond pytest's 300 s
def test_the_real_tritonclient_gets_the_same_answer_as_the_client(
    stub: pb_grpc.GRPCInferenceServiceStub, server: ServerHandle, expected: np.ndarray, tmp_path: Path
) -> None:
    python = triton_python()
    np.save(tmp_path / "x.npy", X)
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("triton_script.py")), server.target, "oip",
         str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["live"] and report["ready"] and report["model_ready"]
    assert report["metadata"]["inputs"] == [{"name": "image", "datatype": "FP32", "shape": ["-1", "8", "8", "1"]}]
    assert report["metadata"]["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert report["response"]["model_version"] == "1"
    assert report["unknown_model_status"] == "StatusCode.NOT_FOUND"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_reflection_describes_the_service_for_grpcurl(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert "inference.GRPCInferenceService" in database.get_services()
        service = DescriptorPool(database).FindServiceByName("inference.GRPCInferenceService")
        infer = service.methods_by_name["ModelInfer"]
        assert infer.input_type.fields_by_name["raw_input_contents"].number == 7
