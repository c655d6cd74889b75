from google.protobuf import struct_pb2 as _struct_pb2
from layerscope.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Finding(_message.Message):
    __slots__ = ("code", "severity", "layers", "message", "suggestion", "evidence", "evidence_json")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    code: str
    severity: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    message: str
    suggestion: str
    evidence: _struct_pb2.Struct
    evidence_json: str
    def __init__(self, code: _Optional[str] = ..., severity: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., suggestion: _Optional[str] = ..., evidence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., evidence_json: _Optional[str] = ...) -> None: ...

class DiagnoseRequest(_message.Message):
    __slots__ = ("model", "inputs", "run_id", "targets", "probe_steps", "loss", "optimizer", "learning_rate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PROBE_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    model: _tensor_pb2.ModelRef
    inputs: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    run_id: str
    targets: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    probe_steps: int
    loss: str
    optimizer: str
    learning_rate: float
    def __init__(self, model: _Optional[_Union[_tensor_pb2.ModelRef, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., run_id: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., probe_steps: _Optional[int] = ..., loss: _Optional[str] = ..., optimizer: _Optional[str] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class ProbeStep(_message.Message):
    __slots__ = ("step", "loss", "gradient_norms", "update_ratios", "dead_fractions", "saturated_fractions")
    class GradientNormsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class UpdateRatiosEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DeadFractionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SaturatedFractionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_NORMS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_RATIOS_FIELD_NUMBER: _ClassVar[int]
    DEAD_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    SATURATED_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    step: int
    loss: float
    gradient_norms: _containers.ScalarMap[str, float]
    update_ratios: _containers.ScalarMap[str, float]
    dead_fractions: _containers.ScalarMap[str, float]
    saturated_fractions: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., loss: _Optional[float] = ..., gradient_norms: _Optional[_Mapping[str, float]] = ..., update_ratios: _Optional[_Mapping[str, float]] = ..., dead_fractions: _Optional[_Mapping[str, float]] = ..., saturated_fractions: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Probe(_message.Message):
    __slots__ = ("steps", "optimizer", "loss")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[ProbeStep]
    optimizer: str
    loss: str
    def __init__(self, steps: _Optional[_Iterable[_Union[ProbeStep, _Mapping]]] = ..., optimizer: _Optional[str] = ..., loss: _Optional[str] = ...) -> None: ...

class DiagnoseResponse(_message.Message):
    __slots__ = ("run_id", "findings", "inputs_used", "probe")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_USED_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    inputs_used: str
    probe: Probe
    def __init__(self, run_id: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., inputs_used: _Optional[str] = ..., probe: _Optional[_Union[Probe, _Mapping]] = ...) -> None: ...
