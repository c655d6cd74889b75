"""Tensors cross the wire as raw little-endian bytes and come back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerscope.client import codec


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in codec.WIRE_DTYPES]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_every_wire_dtype_round_trips_exactly(array: np.ndarray) -> None:
    back = codec.decode(codec.encode("t", array))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()
    assert back.flags.writeable


def test_big_endian_and_non_contiguous_arrays_are_sent_little_endian() -> None:
    array = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    message = codec.encode("t", array)
    assert message.data == np.ascontiguousarray(array, dtype="<f4").tobytes()
    np.testing.assert_array_equal(codec.decode(message), array)


@pytest.mark.parametrize(
    ("dtype", "shape", "payload", "message"),
    [
        ("complex64", [1], b"\0" * 8, "expected a dtype among"),
        ("float32", [2, 2], b"\0" * 12, "expected 16 bytes for float32 (2, 2); received 12"),
        ("float32", [-1], b"", "non-negative dimensions"),
    ],
)
def test_malformed_tensors_are_refused_with_a_clear_message(
    dtype: str, shape: list[int], payload: bytes, message: str
) -> None:
    with pytest.raises(codec.CodecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        codec.from_bytes(dtype, shape, payload)


def test_chunks_cover_the_payload_in_order() -> None:
    payload = bytes(range(256)) * 10
    parts = list(codec.chunks(payload, 1000))
    assert [len(p) for p in parts] == [1000, 1000, 560]
    assert b"".join(parts) == payload
    assert [len(p) for p in codec.chunks(b"", 10)] == [0]
