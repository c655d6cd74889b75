"""Every client failure is a LayerscopeError with a status code and a message naming what was expected and
what was received, in the blocking and the asyncio client alike: mistakes caught before anything is sent
(a missing file, an input dtype the wire cannot carry) as much as errors the server answers with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from layerscope.client import (
    AsyncClient,
    DataLossError,
    InvalidArgumentError,
    LayerscopeError,
    NotFoundError,
    _core,
)
from layerscope.v1 import capture_pb2, diagnosis_pb2, tensor_pb2
from tests.conftest import ServerHandle

UNSENDABLE = [
    pytest.param(np.array(["a", "b"]), "str", id="strings"),
    pytest.param(np.array([1 + 2j]), "complex128", id="complex"),
    pytest.param(np.array([{"a": 1}], dtype=object), "object", id="objects"),
]


def test_uploading_a_missing_file_names_the_path(client: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.keras"
    with pytest.raises(InvalidArgumentError) as caught:
        client.upload_model("missing", missing)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(missing) in caught.value.message and "not there" in caught.value.message
    assert caught.value.message.startswith("Expected a .keras file")


def test_uploading_a_folder_names_the_path(client: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="which is a folder") as caught:
        client.upload_model("folder", tmp_path)
    assert str(tmp_path) in caught.value.message


@pytest.mark.parametrize(("x", "dtype"), UNSENDABLE)
def test_an_input_dtype_the_wire_cannot_carry_is_invalid_argument(client: Any, x: np.ndarray, dtype: str) -> None:
    for call in (lambda: client.predict("any", x), lambda: client.capture("any", {"image": x})):
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert dtype in caught.value.message and "float32" in caught.value.message  # received, and expected
    with pytest.raises(InvalidArgumentError, match="input 'image'"):
        client.diagnose("any", {"image": x})


def test_ragged_lists_are_invalid_argument(client: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="Expected the input to be a NumPy array"):
        client.predict("any", [[1.0, 2.0], [3.0]])


def test_server_errors_still_come_as_their_subclass(client: Any) -> None:
    with pytest.raises(NotFoundError):
        client.predict("no-such-model", np.zeros((1, 4), np.float32))


async def test_the_async_client_raises_the_same_errors(server: ServerHandle, tmp_path: Path) -> None:
    async with AsyncClient(server.target, timeout=120) as c:
        with pytest.raises(InvalidArgumentError, match="not there"):
            await c.upload_model("missing", tmp_path / "nowhere.keras")
        for param in UNSENDABLE:
            x, dtype = param.values
            with pytest.raises(InvalidArgumentError, match=dtype):
                await c.predict("any", x)
            with pytest.raises(InvalidArgumentError, match=dtype):
                await c.capture("any", x)
        with pytest.raises(NotFoundError):
            await c.predict("no-such-model", np.zeros((1, 4), np.float32))


# -- a stream from the server that does not fit together -----------------------------------------------------


def header() -> capture_pb2.CaptureResponse:
    return capture_pb2.CaptureResponse(header=capture_pb2.CaptureHeader(run_id="r1"))


def chunk(data: bytes, last: bool, first: bool = True, total: int = 8) -> capture_pb2.CaptureResponse:
    message = capture_pb2.TensorChunk(data=data, last=last)
    if first:
        message.layer, message.kind, message.dtype, message.total_bytes = "dense", "activation", "float32", total
        message.shape.extend([2])
    return capture_pb2.CaptureResponse(chunk=message)


def assemble(*messages: capture_pb2.CaptureResponse) -> Any:
    assembler = _core.CaptureAssembler()
    for message in messages:
        assembler.add(message)
    return assembler.result()


def test_a_well_formed_stream_assembles() -> None:
    capture = assemble(header(), chunk(np.float32([1, 2]).tobytes()[:4], False), chunk(b"\0\0\0@", True, first=False))
    assert capture.tensors["dense"]["activation"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        pytest.param([chunk(b"\0" * 8, True)], "expected a header first", id="no-header"),
        pytest.param([header(), chunk(b"\0" * 4, False)], "expected 8 bytes for tensor 'dense'", id="cut-short"),
        pytest.param([header(), chunk(b"\0" * 12, True)], "expected 8 bytes for tensor 'dense'", id="too-long"),
        pytest.param([header(), chunk(b"\0" * 4, True, total=4)], "expected 8 bytes for float32", id="wrong-size"),
        pytest.param([header(), chunk(b"\0" * 4, True, first=False)], "expected a tensor's first chunk", id="no-first"),
    ],
)
def test_a_corrupt_capture_stream_is_data_loss(messages: list[capture_pb2.CaptureResponse], words: str) -> None:
    with pytest.raises(DataLossError, match=words) as caught:
        assemble(*messages)
    assert caught.value.code == grpc.StatusCode.DATA_LOSS
    assert isinstance(caught.value, LayerscopeError)


def test_an_output_tensor_that_does_not_decode_is_data_loss() -> None:
    bad = tensor_pb2.Tensor(name="out", dtype="float32", shape=[3], data=b"\0" * 4)
    with pytest.raises(DataLossError, match="expected 12 bytes"):
        _core.outputs([bad])
    with pytest.raises(DataLossError, match="received 'complex64'"):
        _core.outputs([tensor_pb2.Tensor(name="out", dtype="complex64", shape=[1], data=b"\0" * 8)])


# -- evidence keeps its JSON types ------------------------------------------------------------------------------


def test_evidence_prefers_the_json_copy_and_keeps_ints() -> None:
    message = diagnosis_pb2.Finding(code="dense-on-spatial", evidence_json=json.dumps({"input_rank": 4, "r": 0.5}))
    message.evidence.update({"input_rank": 4})
    evidence = _core.finding(message).evidence
    assert json.dumps(evidence) == '{"input_rank": 4, "r": 0.5}'
    message.ClearField("evidence_json")  # an older server: the Struct, where numbers are doubles
    assert _core.finding(message).evidence == {"input_rank": 4.0}
    with pytest.raises(DataLossError, match="expected evidence as a JSON object"):
        _core.finding(diagnosis_pb2.Finding(code="x", evidence_json="[1]"))
