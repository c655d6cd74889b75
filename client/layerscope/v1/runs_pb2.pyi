import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from layerscope.v1 import capture_pb2 as _capture_pb2
from layerscope.v1 import diagnosis_pb2 as _diagnosis_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Run(_message.Message):
    __slots__ = ("run_id", "model_name", "model_version", "model_sha256", "kind", "created_at", "batch_size", "inputs", "device", "duration_seconds", "summaries", "findings", "probe")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    model_name: str
    model_version: int
    model_sha256: str
    kind: str
    created_at: _timestamp_pb2.Timestamp
    batch_size: int
    inputs: str
    device: str
    duration_seconds: float
    summaries: _containers.RepeatedCompositeFieldContainer[_capture_pb2.LayerSummary]
    findings: _containers.RepeatedCompositeFieldContainer[_diagnosis_pb2.Finding]
    probe: _diagnosis_pb2.Probe
    def __init__(self, run_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., model_sha256: _Optional[str] = ..., kind: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch_size: _Optional[int] = ..., inputs: _Optional[str] = ..., device: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., summaries: _Optional[_Iterable[_Union[_capture_pb2.LayerSummary, _Mapping]]] = ..., findings: _Optional[_Iterable[_Union[_diagnosis_pb2.Finding, _Mapping]]] = ..., probe: _Optional[_Union[_diagnosis_pb2.Probe, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "since", "until", "finding_code", "limit", "page_token")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FINDING_CODE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    finding_code: str
    limit: int
    page_token: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finding_code: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CompareRunsRequest(_message.Message):
    __slots__ = ("run_a", "run_b")
    RUN_A_FIELD_NUMBER: _ClassVar[int]
    RUN_B_FIELD_NUMBER: _ClassVar[int]
    run_a: str
    run_b: str
    def __init__(self, run_a: _Optional[str] = ..., run_b: _Optional[str] = ...) -> None: ...

class LayerChange(_message.Message):
    __slots__ = ("layer", "kind", "mean_delta", "std_delta", "zero_fraction_delta", "dead_unit_fraction_delta", "histogram_distance")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEAN_DELTA_FIELD_NUMBER: _ClassVar[int]
    STD_DELTA_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRACTION_DELTA_FIELD_NUMBER: _ClassVar[int]
    DEAD_UNIT_FRACTION_DELTA_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    layer: str
    kind: str
    mean_delta: float
    std_delta: float
    zero_fraction_delta: float
    dead_unit_fraction_delta: float
    histogram_distance: float
    def __init__(self, layer: _Optional[str] = ..., kind: _Optional[str] = ..., mean_delta: _Optional[float] = ..., std_delta: _Optional[float] = ..., zero_fraction_delta: _Optional[float] = ..., dead_unit_fraction_delta: _Optional[float] = ..., histogram_distance: _Optional[float] = ...) -> None: ...

class CompareRunsResponse(_message.Message):
    __slots__ = ("run_a", "run_b", "changes", "only_in_a", "only_in_b", "new_findings", "resolved_findings", "probe")
    RUN_A_FIELD_NUMBER: _ClassVar[int]
    RUN_B_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ONLY_IN_A_FIELD_NUMBER: _ClassVar[int]
    ONLY_IN_B_FIELD_NUMBER: _ClassVar[int]
    NEW_FINDINGS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    run_a: str
    run_b: str
    changes: _containers.RepeatedCompositeFieldContainer[LayerChange]
    only_in_a: _containers.RepeatedScalarFieldContainer[str]
    only_in_b: _containers.RepeatedScalarFieldContainer[str]
    new_findings: _containers.RepeatedCompositeFieldContainer[_diagnosis_pb2.Finding]
    resolved_findings: _containers.RepeatedCompositeFieldContainer[_diagnosis_pb2.Finding]
    probe: ProbeChange
    def __init__(self, run_a: _Optional[str] = ..., run_b: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[LayerChange, _Mapping]]] = ..., only_in_a: _Optional[_Iterable[str]] = ..., only_in_b: _Optional[_Iterable[str]] = ..., new_findings: _Optional[_Iterable[_Union[_diagnosis_pb2.Finding, _Mapping]]] = ..., resolved_findings: _Optional[_Iterable[_Union[_diagnosis_pb2.Finding, _Mapping]]] = ..., probe: _Optional[_Union[ProbeChange, _Mapping]] = ...) -> None: ...

class ProbeChange(_message.Message):
    __slots__ = ("first_loss_delta", "last_loss_delta", "gradient_norm_deltas")
    class GradientNormDeltasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FIRST_LOSS_DELTA_FIELD_NUMBER: _ClassVar[int]
    LAST_LOSS_DELTA_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_NORM_DELTAS_FIELD_NUMBER: _ClassVar[int]
    first_loss_delta: float
    last_loss_delta: float
    gradient_norm_deltas: _containers.ScalarMap[str, float]
    def __init__(self, first_loss_delta: _Optional[float] = ..., last_loss_delta: _Optional[float] = ..., gradient_norm_deltas: _Optional[_Mapping[str, float]] = ...) -> None: ...
