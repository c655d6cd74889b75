"""Fuzzing the two places untrusted bytes enter: the archive scanner and request decoding.

Whatever arrives, the only errors that may come out are the domain's InvalidInput family, which the
transport answers with INVALID_ARGUMENT; anything else would reach the caller as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerscope.oip import grpc_predict_v2_pb2 as oip_pb
from layerscope.service.domain.runs import RunQuery, RunRecord
from layerscope.service.domain.selection import DEFAULT_KINDS, KINDS
from layerscope.service.errors import InvalidInput
from layerscope.service.grpc import convert, oip
from layerscope.service.models.scanner import ArchiveReport, ScanLimits, scan_archive
from layerscope.service.store.engine import create_engine
from layerscope.service.store.migrations import migrate
from layerscope.service.store.sql_store import MAX_PAGE, SqlRunStore
from layerscope.v1 import capture_pb2, runs_pb2, tensor_pb2
from tests.store.factory import T0, make_run
from tests.support import models

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMITS = ScanLimits(max_archive_bytes=1 << 20, max_config_bytes=1 << 18)


@pytest.fixture(scope="module")
def valid_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return models.save(models.dead_relu_model(), tmp_path_factory.mktemp("fuzz")).read_bytes()


def scan_bytes(data: bytes, folder: Path) -> ArchiveReport | None:
    """The scanner's report, or None when it refused the bytes (with InvalidInput: nothing else may escape)."""
    path = folder / "fuzz.keras"
    path.write_bytes(data)
    try:
        report = scan_archive(path, LIMITS)
    except InvalidInput:
        return None
    assert zipfile.is_zipfile(io.BytesIO(data)), "accepted bytes that are not a zip archive"
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert "config.json" in report.members
    assert isinstance(report.config, dict)
    assert report.compile_config is None or (isinstance(report.compile_config, dict) and report.compile_config)
    return report


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused_cleanly(data: bytes, tmp_path: Path) -> None:
    report = scan_bytes(data, tmp_path)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        assert report is None, "bytes that are not a zip archive were accepted"


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
    shape=st.lists(st.integers(-3, 5), max_size=4)
    | st.lists(st.integers(0, 2) | st.integers(2**31, 2**63 - 1), max_size=70),  # huge products, too many dims
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
        ref = convert.model_ref(request.model)
    except InvalidInput:
        pass
    else:
        assert ref.name == name and ref.name
        assert ref.version == (version or None) and (ref.version is None or ref.version >= 1)
    try:
        selection = convert.selection(request)
    except InvalidInput:
        return
    assert selection.layers == (tuple(layers) or ("*",))
    assert selection.kinds == (frozenset(kinds) or DEFAULT_KINDS) and selection.kinds <= KINDS


SEEDED: tuple[RunRecord, ...] = (
    make_run(0, codes=("dead-units",), layers=1),
    make_run(1, layers=1),
    make_run(2, model="mnist", version=2, codes=("non-finite", "dead-units"), layers=1),
    make_run(3, model="mnist", version=2, layers=1),
    make_run(4, codes=("non-finite",), layers=1),
    make_run(5, model="mnist", version=2, layers=1, created_at=T0 + timedelta(minutes=4)),  # ties with run 4
    make_run(6, model="mnist", codes=("dead-units",), layers=1),
)
"""A handful of runs, so that filters and pages of the fuzzed queries select real rows."""
NEWEST_FIRST = sorted(SEEDED, key=lambda r: (r.created_at, r.run_id), reverse=True)
REAL_TOKEN = "<a token from a real page>"


@pytest.fixture(scope="module")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> SqlRunStore:
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz-store') / 'runs.db'}")
    migrate(engine)
    store = SqlRunStore(engine)
    for run in SEEDED:
        assert store.save_run(run)
    return store


def selected(query: RunQuery, after: RunRecord | None) -> list[str]:
    """The run ids `query` must list, newest first: the store's contract computed over SEEDED."""
    runs = [
        r
        for r in NEWEST_FIRST
        if (query.model_name is None or r.model_name == query.model_name)
        and (query.model_version is None or r.model_version == query.model_version)
        and (query.since is None or r.created_at >= query.since)
        and (query.until is None or r.created_at < query.until)
        and (query.finding_code is None or any(f.code == query.finding_code for f in r.findings))
        and (after is None or (r.created_at, r.run_id) < (after.created_at, after.run_id))
    ]
    return [r.run_id for r in runs[: query.limit]]


T0_SECONDS = int(T0.timestamp())
timestamps = st.builds(
    lambda seconds, nanos: {"seconds": seconds, "nanos": nanos},
    st.integers(-(2**63), 2**63 - 1)
    | st.integers(-62_135_596_800, 253_402_300_799)
    | st.integers(T0_SECONDS - 120, T0_SECONDS + 600),  # around the seeded runs
    st.integers(-(2**31), 2**31 - 1) | st.integers(0, 999_999_999),
)


@FUZZ
@given(
    since=st.none() | timestamps,
    until=st.none() | timestamps,
    limit=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 9),
    token=st.text(max_size=40)
    | st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode())
    | st.just(REAL_TOKEN),
    after=st.integers(1, len(SEEDED) - 1),
    model_name=st.text(max_size=12) | st.sampled_from(["digits", "mnist"]),
    model_version=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 3),
    finding_code=st.text(max_size=12) | st.sampled_from(["dead-units", "non-finite"]),
)
def test_any_list_runs_request_answers_or_is_an_invalid_argument(
    since: dict[str, int] | None,
    until: dict[str, int] | None,
    limit: int,
    token: str,
    after: int,
    model_name: str,
    model_version: int,
    finding_code: str,
    run_store: SqlRunStore,
) -> None:
    last_seen = None
    if token == REAL_TOKEN:  # resume after the first `after` runs of an unfiltered listing
        first = run_store.list_runs(RunQuery(limit=after))
        assert [r.run_id for r in first.runs] == [r.run_id for r in NEWEST_FIRST[:after]]
        assert first.next_page_token
        token, last_seen = first.next_page_token, NEWEST_FIRST[after - 1]
    request = runs_pb2.ListRunsRequest(
        limit=limit,
        page_token=token,
        model_name=model_name,
        model_version=model_version,
        finding_code=finding_code,
    )
    for field, value in (("since", since), ("until", until)):
        if value is not None:
            getattr(request, field).seconds, getattr(request, field).nanos = value["seconds"], value["nanos"]
    try:
        query = convert.run_query(request)
        page = run_store.list_runs(query)
    except InvalidInput:
        return
    assert 1 <= query.limit <= convert.MAX_RUNS_PAGE <= MAX_PAGE
    assert query.limit == (limit or 20)
    assert len(page.runs) <= query.limit
    listed = [r.run_id for r in page.runs]
    assert len(set(listed)) == len(listed) and set(listed) <= {r.run_id for r in SEEDED}
    if not token or last_seen is not None:  # a page from the start, or after a known run: exactly these
        assert listed == selected(query, last_seen)
        more = len(selected(dataclasses.replace(query, limit=MAX_PAGE), last_seen)) > query.limit
        assert (page.next_page_token is not None) == more, "a next page token exactly when runs remain"
    elif listed:  # a token that happened to decode: a stretch of the same selection, in the same order
        everything = selected(dataclasses.replace(query, limit=MAX_PAGE, page_token=None), None)
        start = everything.index(listed[0])
        assert listed == everything[start : start + query.limit]
    if page.next_page_token is not None:
        assert len(page.runs) == query.limit


@FUZZ
@given(name=st.text(max_size=8), version=st.text(max_size=6) | st.integers(-3, 10**6).map(str))
def test_any_open_inference_model_reference_converts_or_is_an_invalid_argument(name: str, version: str) -> None:
    try:
        ref = oip.model_ref(name, version)
    except InvalidInput:
        return
    assert ref.name == name and ref.name
    assert ref.version is None or ref.version >= 1
    assert ref.version == (int(version) if version else None)


@FUZZ
@given(
    datatype=st.sampled_from(["FP32", "FP64", "INT8", "UINT64", "BOOL", "BYTES", "FP16", "", "fp32"]),
    shape=st.lists(st.integers(-2, 4), max_size=4)
    | st.lists(st.integers(0, 1) | st.integers(2**40, 2**62), max_size=70),
    raw=st.none() | st.binary(max_size=64),
    floats=st.lists(st.floats(width=32), max_size=8),
    ints=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
)
def test_any_open_inference_input_decodes_or_is_an_invalid_argument(
    datatype: str, shape: list[int], raw: bytes | None, floats: list[float], ints: list[int]
) -> None:
    request = oip_pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    if raw is not None:
        request.raw_input_contents.append(raw)
    else:
        tensor.contents.fp32_contents.extend(floats)
        tensor.contents.int_contents.extend(ints)
    with contextlib.suppress(InvalidInput):
        oip.decode_inputs(request)
