from layerscope.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Statistics(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATISTICS_SAMPLED: _ClassVar[Statistics]
    STATISTICS_EXACT: _ClassVar[Statistics]
    STATISTICS_NONE: _ClassVar[Statistics]
STATISTICS_SAMPLED: Statistics
STATISTICS_EXACT: Statistics
STATISTICS_NONE: Statistics

class Summary(_message.Message):
    __slots__ = ("count", "mean", "std", "min", "max", "zero_fraction", "nan", "posinf", "neginf", "histogram", "histogram_low", "histogram_high", "unit_activity", "histogram_sample")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ZERO_FRACTION_FIELD_NUMBER: _ClassVar[int]
    NAN_FIELD_NUMBER: _ClassVar[int]
    POSINF_FIELD_NUMBER: _ClassVar[int]
    NEGINF_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_LOW_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_HIGH_FIELD_NUMBER: _ClassVar[int]
    UNIT_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan: int
    posinf: int
    neginf: int
    histogram: _containers.RepeatedScalarFieldContainer[int]
    histogram_low: float
    histogram_high: float
    unit_activity: _containers.RepeatedScalarFieldContainer[float]
    histogram_sample: int
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., zero_fraction: _Optional[float] = ..., nan: _Optional[int] = ..., posinf: _Optional[int] = ..., neginf: _Optional[int] = ..., histogram: _Optional[_Iterable[int]] = ..., histogram_low: _Optional[float] = ..., histogram_high: _Optional[float] = ..., unit_activity: _Optional[_Iterable[float]] = ..., histogram_sample: _Optional[int] = ...) -> None: ...

class LayerSummary(_message.Message):
    __slots__ = ("layer", "layer_class", "kind", "shape", "summary")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    LAYER_CLASS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    layer: str
    layer_class: str
    kind: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    summary: Summary
    def __init__(self, layer: _Optional[str] = ..., layer_class: _Optional[str] = ..., kind: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class CaptureRequest(_message.Message):
    __slots__ = ("model", "inputs", "layers", "kinds", "full", "run_id", "max_tensor_bytes", "statistics", "targets", "loss", "batch_summaries", "summaries_in_header")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_TENSOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_IN_HEADER_FIELD_NUMBER: _ClassVar[int]
    model: _tensor_pb2.ModelRef
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    layers: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    full: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    max_tensor_bytes: int
    statistics: Statistics
    targets: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    loss: str
    batch_summaries: bool
    summaries_in_header: bool
    def __init__(self, model: _Optional[_Union[_tensor_pb2.ModelRef, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., layers: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ..., full: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ..., max_tensor_bytes: _Optional[int] = ..., statistics: _Optional[_Union[Statistics, str]] = ..., targets: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., loss: _Optional[str] = ..., batch_summaries: _Optional[bool] = ..., summaries_in_header: _Optional[bool] = ...) -> None: ...

class CaptureHeader(_message.Message):
    __slots__ = ("run_id", "device", "batch_size", "outputs", "duration_seconds", "summaries")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    device: str
    batch_size: int
    outputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    duration_seconds: float
    summaries: LayerSummaries
    def __init__(self, run_id: _Optional[str] = ..., device: _Optional[str] = ..., batch_size: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., duration_seconds: _Optional[float] = ..., summaries: _Optional[_Union[LayerSummaries, _Mapping]] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("layer", "kind", "dtype", "shape", "total_bytes", "data", "last")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    layer: str
    kind: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    total_bytes: int
    data: bytes
    last: bool
    def __init__(self, layer: _Optional[str] = ..., kind: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., total_bytes: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class LayerSummaries(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[LayerSummary]
    def __init__(self, items: _Optional[_Iterable[_Union[LayerSummary, _Mapping]]] = ...) -> None: ...

class CaptureResponse(_message.Message):
    __slots__ = ("header", "summary", "summaries", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: CaptureHeader
    summary: LayerSummary
    summaries: LayerSummaries
    chunk: TensorChunk
    def __init__(self, header: _Optional[_Union[CaptureHeader, _Mapping]] = ..., summary: _Optional[_Union[LayerSummary, _Mapping]] = ..., summaries: _Optional[_Union[LayerSummaries, _Mapping]] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...
