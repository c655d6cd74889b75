"""The Open Inference Protocol (KServe v2) for plain inference, beside layerscope's own service.

Existing clients (tritonclient, KServe) call ModelInfer on a loaded model; the servicer converts tensors
with the small pure functions below and delegates to the same `Inspector.predict` as layerscope's Predict.
Tensors go through the one dtype table (`layerscope.client.codec`); KServe's names map onto it here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
import numpy as np

from layerscope.client import codec
from layerscope.oip import grpc_predict_v2_pb2 as pb
from layerscope.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.inputs import outside_integer_range
from layerscope.service.domain.models import ModelInfo, ModelRef, check_version
from layerscope.service.domain.text import quoted
from layerscope.service.errors import InvalidInput, NotFound
from layerscope.service.inspector import Inspector

Context: TypeAlias = grpc.aio.ServicerContext
SERVER_NAME = "layerscope"
PLATFORM = "tensorflow_keras"

DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
"""KServe datatype -> the codec's dtype name (a key of `codec.WIRE_DTYPES`)."""
KSERVE_DATATYPES: dict[str, str] = {wire: kserve for kserve, wire in DATATYPES.items()}
SENT_AS_FP32 = frozenset({"bfloat16"})
"""Model dtypes with no numpy-native wire form; outputs of these travel as FP32, which every client reads."""

CONTENTS_FIELDS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(bool)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
}
"""The typed-contents field that carries each datatype, and that field's own dtype. FP16 travels only raw."""


# -- requests in --------------------------------------------------------------------------------------------


def model_ref(name: str, version: str) -> ModelRef:
    """KServe versions are strings; "" means the newest loaded version."""
    if not name:
        raise InvalidInput("Expected a model name; received an empty one.")
    if version and not (version.isascii() and version.isdigit() and int(version) > 0):
        raise InvalidInput(
            f"Expected a positive integer model version, or none for the newest; received {quoted(version)}."
        )
    return ModelRef(name, check_version(int(version)) if version else None)


def input_dtype(datatype: str, tensor: str) -> np.dtype[Any]:
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"Input {quoted(tensor)}: expected a datatype among {sorted(DATATYPES)}; received {quoted(datatype)}."
        )
    return codec.WIRE_DTYPES[DATATYPES[datatype]]


def input_shape(tensor: pb.ModelInferRequest.InferInputTensor) -> tuple[int, ...]:
    """The shape, refused unless an array of the tensor's datatype can have it (rank, sign, size).

    Call after `input_dtype`, which proves the datatype known.
    """
    shape = tuple(int(d) for d in tensor.shape)
    try:
        codec.payload_bytes(tensor.name, DATATYPES[tensor.datatype], shape)
    except codec.CodecError as exc:
        raise InvalidInput(f"Input {str(exc).removeprefix('Tensor ')}") from exc
    return shape


def from_raw(tensor: pb.ModelInferRequest.InferInputTensor, payload: bytes) -> np.ndarray:
    """Row-major little-endian bytes, checked against datatype and shape before numpy sees them."""
    dtype, shape = input_dtype(tensor.datatype, tensor.name), input_shape(tensor)
    expected = math.prod(shape) * dtype.itemsize
    if len(payload) != expected:
        raise InvalidInput(
            f"Input '{tensor.name}': expected {expected} bytes for {tensor.datatype} {shape}; received {len(payload)}."
        )
    return codec.from_bytes(DATATYPES[tensor.datatype], shape, payload, tensor.name)


def from_contents(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray:
    """Typed contents: exactly the field for the datatype, one value per element, each in the dtype's range."""
    dtype, shape = input_dtype(tensor.datatype, tensor.name), input_shape(tensor)
    if tensor.datatype not in CONTENTS_FIELDS:
        raise InvalidInput(
            f"Input '{tensor.name}': expected {tensor.datatype} as raw_input_contents (the protocol has no typed "
            "field for it); received typed contents."
        )
    field, carrier = CONTENTS_FIELDS[tensor.datatype]
    others = sorted(f.name for f, _ in tensor.contents.ListFields() if f.name != field)
    if others:
        raise InvalidInput(
            f"Input '{tensor.name}': expected {tensor.datatype} values in contents.{field}; "
            f"received contents.{', contents.'.join(others)}."
        )
    values = np.asarray(getattr(tensor.contents, field), dtype=carrier)
    count = math.prod(shape)
    if values.size != count:
        raise InvalidInput(
            f"Input '{tensor.name}': expected {count} values in contents.{field} for shape {shape}; "
            f"received {values.size}."
        )
    if dtype.kind in "iu" and (outside := outside_integer_range(values, dtype)) is not None:
        bounds, (low, high) = np.iinfo(dtype), outside
        raise InvalidInput(
            f"Input '{tensor.name}': expected {tensor.datatype} values in [{bounds.min}, {bounds.max}]; "
            f"received values in [{low}, {high}]."
        )
    return values.astype(dtype).reshape(shape)


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """All inputs raw (one raw_input_contents entry each, in order) or all typed, never a mix."""
    raw: Sequence[bytes] = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"Expected one raw_input_contents entry per input ({len(request.inputs)}); received {len(raw)}."
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise InvalidInput(f"Expected distinct input names; received {quoted(tensor.name)} twice.")
        if raw and tensor.contents.ListFields():
            raise InvalidInput(
                f"Input '{tensor.name}': expected either raw_input_contents or typed contents; received both."
            )
        arrays[tensor.name] = from_raw(tensor, raw[i]) if raw else from_contents(tensor)
    return arrays


# -- answers out --------------------------------------------------------------------------------------------


def wire_dtype(dtype: str, tensor: str) -> str:
    """The codec dtype a model tensor of `dtype` travels as."""
    if dtype in KSERVE_DATATYPES:
        return dtype
    if dtype in SENT_AS_FP32:
        return "float32"
    raise InvalidInput(
        f"Tensor '{tensor}' has dtype {dtype}; the Open Inference Protocol service carries only "
        f"{sorted(KSERVE_DATATYPES)}."
    )


def tensor_metadata(spec: InputSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name,
        datatype=KSERVE_DATATYPES[wire_dtype(spec.dtype, spec.name)],
        shape=[-1 if d is None else int(d) for d in spec.shape],
    )


def model_metadata(info: ModelInfo, versions: Iterable[int]) -> pb.ModelMetadataResponse:
    """KServe's metadata of one loaded version: its inputs and outputs in KServe datatypes, and every loaded
    version of the model (oldest first)."""
    return pb.ModelMetadataResponse(
        name=info.name,
        versions=[str(v) for v in sorted(versions)],
        platform=PLATFORM,
        inputs=[tensor_metadata(s) for s in info.inputs],
        outputs=[tensor_metadata(s) for s in info.output_specs],
    )


def infer_response(
    request: pb.ModelInferRequest, info: ModelInfo, outputs: Mapping[str, np.ndarray]
) -> pb.ModelInferResponse:
    """The requested outputs (all, when none are named) as raw_output_contents, as tritonclient reads them."""
    wanted = [o.name for o in request.outputs] or list(outputs)
    missing = sorted(set(wanted) - set(outputs))
    if missing:
        raise InvalidInput(f"Expected outputs among {sorted(outputs)}; received requests for {missing}.")
    response = pb.ModelInferResponse(model_name=info.name, model_version=str(info.version), id=request.id)
    for name in wanted:
        array = np.asarray(outputs[name])
        dtype, shape, payload = codec.to_bytes(array.astype(wire_dtype(array.dtype.name, name), copy=False))
        response.outputs.add(name=name, datatype=KSERVE_DATATYPES[dtype], shape=shape)
        response.raw_output_contents.append(payload)
    return response


def chosen(loaded: Iterable[ModelInfo], ref: ModelRef) -> tuple[ModelInfo | None, list[int]]:
    """The loaded model `ref` names (newest when it names no version), and every loaded version of it."""
    same_name = [m for m in loaded if m.name == ref.name]
    versions = sorted(m.version for m in same_name)
    matching = [m for m in same_name if ref.version in (None, m.version)]
    return max(matching, key=lambda m: m.version, default=None), versions


# -- the service ----------------------------------------------------------------------------------------------


class OpenInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]  # generated, untyped
    """Domain errors propagate; the service interceptor maps them to status codes."""

    def __init__(self, inspector: Inspector, version: str, ready: Callable[[], bool] = lambda: True) -> None:
        """`ready`: whether the server is ready for inference (ServerReady), as the server's health knows it."""
        self._inspector = inspector
        self._version = version
        self._ready = ready

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=[])

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        info, _ = chosen(self._inspector.list_models(), model_ref(request.name, request.version))
        return pb.ModelReadyResponse(ready=info is not None)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        """A loaded version's metadata; NOT_FOUND names the loaded versions when the one asked for is not."""
        ref = model_ref(request.name, request.version)
        info, versions = chosen(self._inspector.list_models(), ref)
        if info is None:
            wanted = "any version" if ref.version is None else f"version {ref.version}"
            raise NotFound(
                f"Expected a loaded model '{ref.name}' at {wanted}; loaded versions of it: {versions or 'none'}."
            )
        return model_metadata(info, versions)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        ref = model_ref(request.model_name, request.model_version)
        info, outputs = await self._inspector.predict(ref, decode_inputs(request))
        return infer_response(request, info, outputs)
