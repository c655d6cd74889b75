"""Fuzzing the two places untrusted bytes enter: the archive scanner and request decoding.

Whatever arrives, the only errors that may come out are the domain's InvalidInput family, which the
transport answers with INVALID_ARGUMENT; anything else would reach the caller as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.service.errors import InvalidInput
from layerscope.service.grpc import convert
from layerscope.service.models.scanner import ScanLimits, scan_archive
from layerscope.v1 import capture_pb2, tensor_pb2
from tests.support import models

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMITS = ScanLimits(max_archive_bytes=1 << 20, max_config_bytes=1 << 18)


@pytest.fixture(scope="module")
def valid_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return models.save(models.dead_relu_model(), tmp_path_factory.mktemp("fuzz")).read_bytes()


def scan_bytes(data: bytes, folder: Path) -> None:
    path = folder / "fuzz.keras"
    path.write_bytes(data)
    with contextlib.suppress(InvalidInput):
        scan_archive(path, LIMITS)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data: bytes, tmp_path: Path) -> None:
    scan_bytes(data, tmp_path)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=12), cut=st.integers(0))
def test_damaged_archives_are_refused_cleanly(
    flips: list[tuple[int, int]], cut: int, valid_archive: bytes, tmp_path: Path
) -> None:
    data = bytearray(valid_archive)
    for position, value in flips:
        data[position % len(data)] = value
    scan_bytes(bytes(data[: len(data) - cut % len(data)] if cut % 3 == 0 else data), tmp_path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=40,
)


@FUZZ
@given(
    config=json_values,
    extra=st.dictionaries(st.sampled_from(["class_name", "module", "registered_name"]), st.text(max_size=30)),
)
def test_arbitrary_json_configs_are_judged_cleanly(config: object, extra: dict[str, str], tmp_path: Path) -> None:
    document = {**extra, "config": config} if extra else config
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps(document))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    scan_bytes(buffer.getvalue(), tmp_path)


@FUZZ
@given(
    dtype=st.sampled_from(["float32", "float64", "int8", "uint16", "bool", "complex64", "", "object", "float32 "]),
    shape=st.lists(st.integers(-3, 5), max_size=4),
    data=st.binary(max_size=64),
    name=st.text(max_size=8),
)
def test_any_tensor_message_decodes_or_is_an_invalid_argument(
    dtype: str, shape: list[int], data: bytes, name: str
) -> None:
    tensor = tensor_pb2.Tensor(name=name, dtype=dtype, shape=shape, data=data)
    try:
        arrays = convert.inputs([tensor])
    except InvalidInput:
        return
    (array,) = arrays.values()
    assert list(array.shape) == shape and array.dtype.name == dtype


@FUZZ
@given(
    layers=st.lists(st.text(max_size=10), max_size=3),
    kinds=st.lists(st.sampled_from(["activation", "input", "kernel", "bias", "other", "grad", ""]), max_size=4),
    version=st.integers(-5, 5),
    name=st.text(max_size=10),
)
def test_any_capture_request_converts_or_is_an_invalid_argument(
    layers: list[str], kinds: list[str], version: int, name: str
) -> None:
    request = capture_pb2.CaptureRequest(
        model=tensor_pb2.ModelRef(name=name, version=version), layers=layers, kinds=kinds
    )
    try:
        convert.model_ref(request.model)
        convert.selection(request)
    except InvalidInput:
        pass
