"""The Open Inference Protocol conversions, as the pure functions they are: no server, no model."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from layerscope.client import codec
from layerscope.oip import grpc_predict_v2_pb2 as pb
from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.models import ModelInfo, ModelRef
from layerscope.service.errors import InvalidInput
from layerscope.service.grpc import oip

INFO = ModelInfo("m", 2, "sha", 10, ("dense",))
SAMPLES = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], np.uint8),
    "UINT16": np.array([[0, 7, 65535], [1, 2, 3]], np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1], [1, 2, 3]], np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1], [1, 2, 3]], np.uint64),
    "INT8": np.array([[-128, 0, 127], [1, 2, 3]], np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1], [1, 2, 3]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, 2, 3]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, 2, 3]], np.int64),
    "FP16": np.array([[0.5, -1.0, 65504.0], [1, 2, 3]], np.float16),
    "FP32": np.array([[0.5, -1.0, 1e30], [1, 2, 3]], np.float32),
    "FP64": np.array([[0.5, -1.0, 1e300], [1, 2, 3]], np.float64),
}


def request_with(datatype: str, array: np.ndarray, raw: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
    if raw:
        request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    else:
        field, _ = oip.CONTENTS_FIELDS[datatype]
        getattr(tensor.contents, field).extend(array.ravel().tolist())
    return request


def test_every_kserve_datatype_maps_onto_the_one_codec_table() -> None:
    assert set(oip.DATATYPES) == set(SAMPLES)
    assert set(oip.DATATYPES.values()) <= set(codec.WIRE_DTYPES)
    assert set(oip.CONTENTS_FIELDS) == set(oip.DATATYPES) - {"FP16"}


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_raw_inputs_decode_exactly(datatype: str) -> None:
    decoded = oip.decode_inputs(request_with(datatype, SAMPLES[datatype], raw=True))["x"]
    assert decoded.dtype == SAMPLES[datatype].dtype and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, SAMPLES[datatype])


@pytest.mark.parametrize("datatype", sorted(set(SAMPLES) - {"FP16"}))
def test_typed_inputs_decode_exactly(datatype: str) -> None:
    decoded = oip.decode_inputs(request_with(datatype, SAMPLES[datatype], raw=False))["x"]
    assert decoded.dtype == SAMPLES[datatype].dtype
    np.testing.assert_array_equal(decoded, SAMPLES[datatype])


def test_big_endian_bytes_never_leak_in() -> None:
    request = request_with("INT32", np.array([1, 256], np.int32), raw=True)
    assert request.raw_input_contents[0] == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    np.testing.assert_array_equal(oip.decode_inputs(request)["x"], [1, 256])


def broken(edit: str) -> pb.ModelInferRequest:
    request = request_with("FP32", np.zeros((2, 3), np.float32), raw=edit.startswith("raw"))
    tensor = request.inputs[0]
    if edit == "raw-short":
        request.raw_input_contents[0] = b"\0" * 20
    elif edit == "raw-count":
        request.raw_input_contents.append(b"")
    elif edit == "raw-and-typed":
        tensor.contents.fp32_contents.extend([0.0] * 6)
    elif edit == "raw-negative-dim":
        tensor.shape[0] = -1
    elif edit == "typed-count":
        tensor.contents.fp32_contents.append(1.0)
    elif edit == "typed-wrong-field":
        tensor.contents.ClearField("fp32_contents")
        tensor.contents.int_contents.extend([0] * 6)
    elif edit == "typed-fp16":
        tensor.datatype = "FP16"
    elif edit == "typed-duplicate-name":
        request.inputs.add().CopyFrom(tensor)
    elif edit == "typed-unknown-datatype":
        tensor.datatype = "BF16"
    return request


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("raw-short", "Input 'x': expected 24 bytes for FP32 (2, 3); received 20."),
        ("raw-count", "Expected one raw_input_contents entry per input (1); received 2."),
        ("raw-and-typed", "Input 'x': expected either raw_input_contents or typed contents; received both."),
        ("raw-negative-dim", "Input 'x': expected non-negative dimensions; received shape (-1, 3)."),
        ("typed-count", "Input 'x': expected 6 values in contents.fp32_contents for shape (2, 3); received 7."),
        (
            "typed-wrong-field",
            "Input 'x': expected FP32 values in contents.fp32_contents; received contents.int_contents.",
        ),
        ("typed-fp16", "Input 'x': expected FP16 as raw_input_contents"),
        ("typed-duplicate-name", "Expected distinct input names; received 'x' twice."),
        ("typed-unknown-datatype", "expected a datatype among ['BOOL', 'FP16', "),
    ],
)
def test_malformed_inputs_are_refused_with_expected_and_received(edit: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        oip.decode_inputs(broken(edit))
    assert message in caught.value.message


@pytest.mark.parametrize(("datatype", "value"), [("UINT8", 256), ("INT8", -129), ("INT16", 2**15), ("UINT16", 2**16)])
def test_typed_values_outside_the_datatype_are_refused_not_wrapped(datatype: str, value: int) -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(tensor.contents, oip.CONTENTS_FIELDS[datatype][0]).extend([0, value])
    with pytest.raises(InvalidInput, match=rf"expected {datatype} values in \[-?\d+, \d+\]; received values in"):
        oip.decode_inputs(request)


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [("m", "", ModelRef("m")), ("m", "3", ModelRef("m", 3))],
)
def test_model_refs(name: str, version: str, expected: ModelRef) -> None:
    assert oip.model_ref(name, version) == expected


@pytest.mark.parametrize(("name", "version"), [("", ""), ("m", "latest"), ("m", "0"), ("m", "-1")])
def test_bad_model_refs(name: str, version: str) -> None:
    with pytest.raises(InvalidInput):
        oip.model_ref(name, version)


def test_outputs_go_raw_little_endian_with_kserve_datatypes() -> None:
    outputs = {
        "probabilities": np.array([[0.25, 0.75]], np.float32),
        "classes": np.array([1], ">i8"),
        "mask": np.array([True, False]),
        "half": np.array([1.5], np.float16),
        "brain": np.array([1.5, -2.0], ml_dtypes.bfloat16),
    }
    request = pb.ModelInferRequest(model_name="m", id="req-7")
    response = oip.infer_response(request, INFO, outputs)
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "req-7")
    got = [(t.name, t.datatype, list(t.shape)) for t in response.outputs]
    assert got == [
        ("probabilities", "FP32", [1, 2]),
        ("classes", "INT64", [1]),
        ("mask", "BOOL", [2]),
        ("half", "FP16", [1]),
        ("brain", "FP32", [2]),
    ]
    raw = list(response.raw_output_contents)
    assert raw[1] == (1).to_bytes(8, "little")
    np.testing.assert_array_equal(np.frombuffer(raw[0], "<f4"), [0.25, 0.75])
    np.testing.assert_array_equal(np.frombuffer(raw[2], "?"), [True, False])
    np.testing.assert_array_equal(np.frombuffer(raw[3], "<f2"), [1.5])
    np.testing.assert_array_equal(np.frombuffer(raw[4], "<f4"), [1.5, -2.0])


def test_requested_outputs_are_answered_in_the_order_asked() -> None:
    outputs = {"a": np.zeros(1, np.float32), "b": np.ones(2, np.int32)}
    request = pb.ModelInferRequest(model_name="m")
    request.outputs.add(name="b")
    response = oip.infer_response(request, INFO, outputs)
    assert [t.name for t in response.outputs] == ["b"] and len(response.raw_output_contents) == 1
    request.outputs.add(name="ghost")
    with pytest.raises(InvalidInput, match=r"Expected outputs among \['a', 'b'\]; received requests for \['ghost'\]"):
        oip.infer_response(request, INFO, outputs)


def test_metadata_marks_free_dimensions_and_lists_every_loaded_version() -> None:
    info = ModelInfo(
        "m",
        2,
        "sha",
        10,
        ("dense",),
        inputs=(InputSpec("image", (None, 8, 8, 1), "float32"), InputSpec("ids", (None,), "int64")),
        outputs=("out",),
        output_specs=(InputSpec("out", (None, 3), "bfloat16"),),
    )
    meta = oip.model_metadata(info, [2, 1])
    assert (meta.name, list(meta.versions), meta.platform) == ("m", ["1", "2"], "tensorflow_keras")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("image", "FP32", [-1, 8, 8, 1]),
        ("ids", "INT64", [-1]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("out", "FP32", [-1, 3])]


def test_a_dtype_the_protocol_cannot_carry_is_named() -> None:
    with pytest.raises(InvalidInput, match="Tensor 'text' has dtype string"):
        oip.tensor_metadata(InputSpec("text", (None,), "string"))


def test_the_newest_loaded_version_is_chosen_unless_one_is_named() -> None:
    loaded = [ModelInfo("m", v, "s", 1, ()) for v in (1, 3, 2)] + [ModelInfo("other", 9, "s", 1, ())]
    assert oip.chosen(loaded, ModelRef("m"))[0] == loaded[1]
    assert oip.chosen(loaded, ModelRef("m", 2)) == (loaded[2], [1, 2, 3])
    assert oip.chosen(loaded, ModelRef("m", 7)) == (None, [1, 2, 3])
    assert oip.chosen(loaded, ModelRef("ghost")) == (None, [])
