import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from layerscope.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetMonitorRequest(_message.Message):
    __slots__ = ("model", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: _tensor_pb2.ModelRef
    limit: int
    def __init__(self, model: _Optional[_Union[_tensor_pb2.ModelRef, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class SetReferenceRequest(_message.Message):
    __slots__ = ("model", "run_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    model: _tensor_pb2.ModelRef
    run_id: str
    def __init__(self, model: _Optional[_Union[_tensor_pb2.ModelRef, _Mapping]] = ..., run_id: _Optional[str] = ...) -> None: ...

class LayerWindowHealth(_message.Message):
    __slots__ = ("layer", "drift_score", "drifting", "statistic", "threshold", "drift_part", "dead_unit_fraction", "non_finite", "activation_rms", "mean", "std", "requests")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    DRIFT_SCORE_FIELD_NUMBER: _ClassVar[int]
    DRIFTING_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFT_PART_FIELD_NUMBER: _ClassVar[int]
    DEAD_UNIT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NON_FINITE_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_RMS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    layer: str
    drift_score: float
    drifting: bool
    statistic: float
    threshold: float
    drift_part: str
    dead_unit_fraction: float
    non_finite: int
    activation_rms: float
    mean: float
    std: float
    requests: int
    def __init__(self, layer: _Optional[str] = ..., drift_score: _Optional[float] = ..., drifting: _Optional[bool] = ..., statistic: _Optional[float] = ..., threshold: _Optional[float] = ..., drift_part: _Optional[str] = ..., dead_unit_fraction: _Optional[float] = ..., non_finite: _Optional[int] = ..., activation_rms: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., requests: _Optional[int] = ...) -> None: ...

class MonitorWindow(_message.Message):
    __slots__ = ("window_id", "replica", "started", "ended", "requests", "reference_id", "resolution", "first_drifting_layer", "input_nonfinite", "layers")
    WINDOW_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FIRST_DRIFTING_LAYER_FIELD_NUMBER: _ClassVar[int]
    INPUT_NONFINITE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    window_id: str
    replica: str
    started: _timestamp_pb2.Timestamp
    ended: _timestamp_pb2.Timestamp
    requests: int
    reference_id: str
    resolution: str
    first_drifting_layer: str
    input_nonfinite: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerWindowHealth]
    def __init__(self, window_id: _Optional[str] = ..., replica: _Optional[str] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., reference_id: _Optional[str] = ..., resolution: _Optional[str] = ..., first_drifting_layer: _Optional[str] = ..., input_nonfinite: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerWindowHealth, _Mapping]]] = ...) -> None: ...

class MonitorReference(_message.Message):
    __slots__ = ("reference_id", "created_at", "source", "requests", "layers")
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    reference_id: str
    created_at: _timestamp_pb2.Timestamp
    source: str
    requests: int
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reference_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., requests: _Optional[int] = ..., layers: _Optional[_Iterable[str]] = ...) -> None: ...

class MonitorEvent(_message.Message):
    __slots__ = ("at", "kind", "layers", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    kind: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class MonitorStatus(_message.Message):
    __slots__ = ("model_name", "model_version", "sample_rate", "samples", "skipped", "nonfinite_samples", "reference", "reference_collected", "reference_needed", "windows", "events", "open_window")
    class SkippedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    NONFINITE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_COLLECTED_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_NEEDED_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    sample_rate: float
    samples: int
    skipped: _containers.ScalarMap[str, int]
    nonfinite_samples: int
    reference: MonitorReference
    reference_collected: int
    reference_needed: int
    windows: _containers.RepeatedCompositeFieldContainer[MonitorWindow]
    events: _containers.RepeatedCompositeFieldContainer[MonitorEvent]
    open_window: MonitorWindow
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., sample_rate: _Optional[float] = ..., samples: _Optional[int] = ..., skipped: _Optional[_Mapping[str, int]] = ..., nonfinite_samples: _Optional[int] = ..., reference: _Optional[_Union[MonitorReference, _Mapping]] = ..., reference_collected: _Optional[int] = ..., reference_needed: _Optional[int] = ..., windows: _Optional[_Iterable[_Union[MonitorWindow, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[MonitorEvent, _Mapping]]] = ..., open_window: _Optional[_Union[MonitorWindow, _Mapping]] = ...) -> None: ...
