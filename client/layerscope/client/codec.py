"""Tensors on the wire: raw little-endian, C-ordered bytes with a dtype name and a shape.

One table serves both sides (the service imports it; the client never imports the service). Unknown
dtypes raise instead of returning None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from layerscope.v1 import tensor_pb2

WIRE_DTYPES: dict[str, np.dtype[np.generic]] = {
    name: np.dtype(name)
    for name in (
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
    )
}
MAX_RANK = 32
"""More dimensions than any model input has; NumPy itself stops at 64."""
CHUNK_BYTES = 1024 * 1024
"""Well under gRPC's default 4 MiB message limit, large enough that per-message overhead is negligible."""


class CodecError(ValueError):
    """A tensor on the wire that does not describe a valid array."""


def wire_dtype(dtype: np.dtype[np.generic]) -> str:
    name = np.dtype(dtype).name
    if name not in WIRE_DTYPES:
        raise CodecError(f"Expected a dtype among {sorted(WIRE_DTYPES)}; received {name}.")
    return name


def to_view(array: np.ndarray) -> tuple[str, tuple[int, ...], memoryview]:
    """Wire dtype, shape and little-endian bytes; no copy for an array that is already so laid out."""
    dtype = wire_dtype(array.dtype)
    little = np.ascontiguousarray(array, dtype=WIRE_DTYPES[dtype].newbyteorder("<"))
    return dtype, tuple(int(d) for d in array.shape), little.reshape(-1).view(np.uint8).data


def to_bytes(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    dtype, shape, view = to_view(array)
    return dtype, shape, view.tobytes()


def from_buffer(dtype: str, shape: Sequence[int], buffer: np.ndarray, name: str = "tensor") -> np.ndarray:
    """An array over a filled uint8 buffer the caller owns: no copy when the machine is little-endian."""
    if dtype not in WIRE_DTYPES:
        raise CodecError(f"Tensor '{name}': expected a dtype among {sorted(WIRE_DTYPES)}; received {dtype!r}.")
    wire = WIRE_DTYPES[dtype].newbyteorder("<")
    expected = payload_bytes(name, dtype, shape)
    if buffer.nbytes != expected:
        raise CodecError(
            f"Tensor '{name}': expected {expected} bytes for {dtype} {tuple(shape)}; received {buffer.nbytes}."
        )
    return buffer.view(wire).reshape(tuple(shape)).astype(WIRE_DTYPES[dtype], copy=False)


def from_bytes(dtype: str, shape: Sequence[int], payload: bytes, name: str = "tensor") -> np.ndarray:
    if dtype not in WIRE_DTYPES:
        raise CodecError(f"Tensor '{name}': expected a dtype among {sorted(WIRE_DTYPES)}; received {dtype!r}.")
    wire = WIRE_DTYPES[dtype].newbyteorder("<")
    expected = payload_bytes(name, dtype, shape)
    if len(payload) != expected:
        raise CodecError(
            f"Tensor '{name}': expected {expected} bytes for {dtype} {tuple(shape)}; received {len(payload)}."
        )
    return np.frombuffer(payload, wire).reshape(tuple(shape)).astype(WIRE_DTYPES[dtype], copy=True)


def payload_bytes(name: str, dtype: str, shape: Sequence[int]) -> int:
    """The payload size a shape asks for, in Python integers (a product of int64 could wrap around)."""
    if len(shape) > MAX_RANK:
        raise CodecError(f"Tensor '{name}': expected at most {MAX_RANK} dimensions; received {len(shape)}.")
    if any(d < 0 for d in shape):
        raise CodecError(f"Tensor '{name}': expected non-negative dimensions; received shape {tuple(shape)}.")
    itemsize = WIRE_DTYPES[dtype].itemsize
    # NumPy refuses a shape whose non-zero dimensions multiply past its index range, even with no elements.
    if math.prod(d for d in shape if d) * itemsize > np.iinfo(np.intp).max:
        raise CodecError(f"Tensor '{name}': expected dimensions an array can have; received shape {tuple(shape)}.")
    return math.prod(shape) * itemsize


def encode(name: str, array: np.ndarray) -> tensor_pb2.Tensor:
    dtype, shape, payload = to_bytes(np.asarray(array))
    return tensor_pb2.Tensor(name=name, dtype=dtype, shape=shape, data=payload)


def decode(tensor: tensor_pb2.Tensor) -> np.ndarray:
    return from_bytes(tensor.dtype, list(tensor.shape), tensor.data, tensor.name)


def chunks(payload: bytes | memoryview, size: int = CHUNK_BYTES) -> Iterator[memoryview]:
    view = memoryview(payload)
    if not len(view):
        yield view
        return
    for start in range(0, len(view), size):
        yield view[start : start + size]
