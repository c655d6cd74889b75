"""Pure conversions between protobuf messages and domain values; tested without a server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.json_format import ParseDict

from layerscope.client import codec
from layerscope.service.compare import Comparison
from layerscope.service.domain.description import Shape
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.inputs import UNNAMED_INPUT
from layerscope.service.domain.jsonable import jsonable
from layerscope.service.domain.models import MAX_VERSION, ModelInfo, ModelRef
from layerscope.service.domain.runs import RunQuery, RunRecord
from layerscope.service.domain.selection import DEFAULT_KINDS, Selection
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.text import quoted
from layerscope.service.domain.training import ProbeResult, TrainingOptions
from layerscope.service.errors import InvalidInput
from layerscope.v1 import capture_pb2, diagnosis_pb2, models_pb2, runs_pb2, tensor_pb2

if TYPE_CHECKING:  # the engine imports TensorFlow; conversion only needs its result type
    from layerscope.service.domain.capture import CaptureResult

MAX_RUNS_PAGE = 500


def model_ref(message: tensor_pb2.ModelRef) -> ModelRef:
    """A caller's model reference, checked: a name, and a version in range (0 on the wire: the newest)."""
    if not message.name:
        raise InvalidInput("Expected a model name in `model.name`; received an empty name.")
    if message.version < 0 or message.version > MAX_VERSION:
        raise InvalidInput(
            f"Expected a model version from 1 to {MAX_VERSION} (or 0 for the newest); received {message.version}."
        )
    return ModelRef(message.name, message.version or None)


def inputs(tensors: Sequence[tensor_pb2.Tensor]) -> dict[str, np.ndarray]:
    """The caller's tensors by name (an unnamed one is `input_<i>`); a repeated name or a tensor that does not
    decode is InvalidInput."""
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        name = tensor.name or UNNAMED_INPUT.format(i)
        if name in arrays:
            raise InvalidInput(f"Expected distinct input names; received {quoted(name)} twice.")
        try:
            arrays[name] = codec.decode(tensor)
        except codec.CodecError as exc:
            raise InvalidInput(str(exc)) from exc
    return arrays


def tensors(arrays: Mapping[str, np.ndarray]) -> list[tensor_pb2.Tensor]:
    return [codec.encode(name, array) for name, array in arrays.items()]


def selection(request: capture_pb2.CaptureRequest) -> Selection:
    return Selection(
        layers=tuple(request.layers) or ("*",),
        kinds=frozenset(request.kinds) or DEFAULT_KINDS,
        full=tuple(request.full),
    )


def capture_training(request: capture_pb2.CaptureRequest) -> TrainingOptions:
    return TrainingOptions(targets=targets(request.targets), loss=request.loss or None)


def diagnose_training(request: diagnosis_pb2.DiagnoseRequest) -> TrainingOptions:
    """Targets, loss and probe settings of a Diagnose; an unset optional field is None (the server's default)."""
    return TrainingOptions(
        targets=targets(request.targets),
        loss=request.loss or None,
        probe_steps=request.probe_steps if request.HasField("probe_steps") else None,
        optimizer=request.optimizer or None,
        learning_rate=request.learning_rate if request.HasField("learning_rate") else None,
    )


def targets(tensors: Sequence[tensor_pb2.Tensor]) -> dict[str, np.ndarray] | None:
    """Targets decode like inputs; a missing name becomes `output_<i>` (one unnamed target fits one output)."""
    if not tensors:
        return None
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        name = tensor.name or f"output_{i}"
        if name in arrays:
            raise InvalidInput(f"Expected distinct target names; received '{name}' twice.")
        try:
            arrays[name] = codec.decode(tensor)
        except codec.CodecError as exc:
            raise InvalidInput(f"Target '{name}': {exc}") from exc
    return arrays


STATISTICS = {
    capture_pb2.STATISTICS_SAMPLED: "sampled",
    capture_pb2.STATISTICS_EXACT: "exact",
    capture_pb2.STATISTICS_NONE: "none",
}


def statistics(request: capture_pb2.CaptureRequest) -> str:
    if request.statistics not in STATISTICS:
        raise InvalidInput(
            f"Expected statistics among {sorted(STATISTICS)} (sampled, exact, none); received {request.statistics}."
        )
    return STATISTICS[request.statistics]


def shape(dims: Iterable[int | None]) -> list[int]:
    return [-1 if d is None else int(d) for d in dims]


def model_info(info: ModelInfo) -> models_pb2.ModelInfo:
    """A loaded model as the wire shows it; an unknown dimension is -1."""
    return models_pb2.ModelInfo(
        name=info.name,
        version=info.version,
        sha256=info.sha256,
        parameters=info.parameters,
        layers=list(info.layers),
        inputs=[models_pb2.InputSpec(name=s.name, shape=shape(s.shape), dtype=s.dtype) for s in info.inputs],
        outputs=list(info.outputs),
        device=info.device,
        layer_details=[
            models_pb2.LayerDetail(
                name=d.name, class_name=d.class_name, output_shape=shape(d.output_shape), parameters=d.parameters
            )
            for d in info.layer_details
        ],
        transient=info.transient,
        max_batch_size=info.max_batch_size,
    )


def summary(value: Summary) -> capture_pb2.Summary:
    """Every statistic of a summary, as computed: counts exact, non-finite values kept."""
    return capture_pb2.Summary(
        count=value.count,
        mean=value.mean,
        std=value.std,
        min=value.min,
        max=value.max,
        zero_fraction=value.zero_fraction,
        nan=value.nan,
        posinf=value.posinf,
        neginf=value.neginf,
        histogram=list(value.histogram),
        histogram_low=value.histogram_range[0],
        histogram_high=value.histogram_range[1],
        unit_activity=list(value.unit_activity),
        histogram_sample=value.histogram_sample,
    )


def layer_summary(
    layer: str, layer_class: str, kind: str, value: Summary, dims: Shape = ()
) -> capture_pb2.LayerSummary:
    return capture_pb2.LayerSummary(
        layer=layer, layer_class=layer_class, kind=kind, shape=shape(dims), summary=summary(value)
    )


def capture_stream(
    run: RunRecord, result: CaptureResult, chunk_bytes: int, batch_summaries: bool = False, in_header: bool = False
) -> Iterator[capture_pb2.CaptureResponse]:
    """Header, then every summary (several to a message when the caller reads them so; in the header itself
    when they fit there and the caller reads them there), then each full tensor in chunks."""
    header = capture_pb2.CaptureHeader(
        run_id=run.run_id,
        device=run.device,
        batch_size=run.batch_size,
        outputs=tensors(result.outputs),
        duration_seconds=run.duration_seconds,
    )
    summaries = (
        layer_summary(point, result.classes.get(point, ""), kind, value)
        for point, kinds in result.summaries.items()
        for kind, value in kinds.items()
    )
    if batch_summaries or in_header:
        messages = _summary_batches(summaries, chunk_bytes)
    else:
        messages = (capture_pb2.CaptureResponse(summary=s) for s in summaries)
    first = next(messages, None) if in_header else None
    if first is not None and header.ByteSize() + first.ByteSize() <= chunk_bytes:
        header.summaries.CopyFrom(first.summaries)
        first = None
    yield capture_pb2.CaptureResponse(header=header)
    if first is not None:
        yield first
    yield from messages
    for point, arrays in result.tensors.items():
        for kind, array in arrays.items():
            yield from tensor_chunks(point, kind, array, chunk_bytes)


def _summary_batches(
    summaries: Iterable[capture_pb2.LayerSummary], limit: int
) -> Iterator[capture_pb2.CaptureResponse]:
    """As many summaries to a message as fit in `limit` bytes (at least one each)."""
    batch: list[capture_pb2.LayerSummary] = []
    size = 0
    for summary in summaries:
        bytes_ = summary.ByteSize() + 8  # the field's tag and length
        if batch and size + bytes_ > limit:
            yield capture_pb2.CaptureResponse(summaries=capture_pb2.LayerSummaries(items=batch))
            batch, size = [], 0
        batch.append(summary)
        size += bytes_
    if batch:
        yield capture_pb2.CaptureResponse(summaries=capture_pb2.LayerSummaries(items=batch))


def tensor_chunks(layer: str, kind: str, array: np.ndarray, chunk_bytes: int) -> Iterator[capture_pb2.CaptureResponse]:
    """One full tensor in chunks of at most `chunk_bytes`: the first names it (layer, kind, dtype, shape,
    total bytes), the last says so; the bytes are the codec's little-endian view of the array."""
    dtype, dims, payload = codec.to_view(array)
    parts = list(codec.chunks(payload, chunk_bytes))
    for i, part in enumerate(parts):
        chunk = capture_pb2.TensorChunk(data=part.tobytes(), last=i == len(parts) - 1)
        if i == 0:
            chunk.layer, chunk.kind, chunk.dtype, chunk.total_bytes = layer, kind, dtype, len(payload)
            chunk.shape.extend(dims)
        yield capture_pb2.CaptureResponse(chunk=chunk)


def evidence(values: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    ParseDict(jsonable(values), message)
    return message


def finding(value: Finding) -> diagnosis_pb2.Finding:
    """A finding with its evidence twice: as a Struct for generic tools, and as exact JSON."""
    # The Struct is for generic tools (every number in it is a double); evidence_json keeps ints as ints.
    return diagnosis_pb2.Finding(
        code=value.code,
        severity=value.severity.value,
        layers=list(value.layers),
        message=value.message,
        suggestion=value.suggestion,
        evidence=evidence(value.evidence),
        evidence_json=json.dumps(jsonable(value.evidence), separators=(",", ":")),
    )


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


def run(value: RunRecord, with_summaries: bool = True) -> runs_pb2.Run:
    """A stored run; a listing leaves out the summaries (`with_summaries=False`), GetRun sends them."""
    return runs_pb2.Run(
        run_id=value.run_id,
        model_name=value.model_name,
        model_version=value.model_version,
        model_sha256=value.model_sha256,
        kind=value.kind,
        created_at=timestamp(value.created_at),
        batch_size=value.batch_size,
        inputs=value.inputs,
        device=value.device,
        duration_seconds=value.duration_seconds,
        summaries=[layer_summary(s.layer, "", s.kind, s.summary) for s in value.summaries] if with_summaries else [],
        findings=[finding(f) for f in value.findings],
        probe=probe(value.probe) if value.probe else None,
    )


def probe(value: ProbeResult) -> diagnosis_pb2.Probe:
    """A training probe, step by step: loss and the per-layer gradient norms, update ratios, dead and
    saturated fractions."""
    return diagnosis_pb2.Probe(
        optimizer=value.optimizer,
        loss=value.loss,
        steps=[
            diagnosis_pb2.ProbeStep(
                step=s.step,
                loss=s.loss,
                gradient_norms=dict(s.gradient_norms),
                update_ratios=dict(s.update_ratios),
                dead_fractions=dict(s.dead_fractions),
                saturated_fractions=dict(s.saturated_fractions),
            )
            for s in value.steps
        ],
    )


def _moment(value: timestamp_pb2.Timestamp, label: str) -> datetime:
    try:
        moment: datetime = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"Expected `{label}` between years 1 and 9999 with nanos in [0, 1e9); "
            f"received seconds={value.seconds}, nanos={value.nanos}."
        ) from exc
    return moment


def run_query(request: runs_pb2.ListRunsRequest) -> RunQuery:
    """A ListRuns request as a query: unset filters are None, a limit of 0 is 20; a limit past
    MAX_RUNS_PAGE or a time outside the datetime range is InvalidInput."""
    if request.limit < 0 or request.limit > MAX_RUNS_PAGE:
        raise InvalidInput(f"Expected a limit between 1 and {MAX_RUNS_PAGE} (0 for 20); received {request.limit}.")
    return RunQuery(
        model_name=request.model_name or None,
        model_version=request.model_version or None,
        since=_moment(request.since, "since") if request.HasField("since") else None,
        until=_moment(request.until, "until") if request.HasField("until") else None,
        finding_code=request.finding_code or None,
        limit=request.limit or 20,
        page_token=request.page_token or None,
    )


def comparison(value: Comparison) -> runs_pb2.CompareRunsResponse:
    """Two runs compared (b minus a): per-layer changes, layers in one run only, findings new and resolved,
    and the probes' change when both runs have one."""
    return runs_pb2.CompareRunsResponse(
        run_a=value.run_a,
        run_b=value.run_b,
        changes=[
            runs_pb2.LayerChange(
                layer=c.layer,
                kind=c.kind,
                mean_delta=c.mean_delta,
                std_delta=c.std_delta,
                zero_fraction_delta=c.zero_fraction_delta,
                dead_unit_fraction_delta=c.dead_unit_fraction_delta,
                histogram_distance=c.histogram_distance,
            )
            for c in value.changes
        ],
        only_in_a=list(value.only_in_a),
        only_in_b=list(value.only_in_b),
        new_findings=[finding(f) for f in value.new_findings],
        resolved_findings=[finding(f) for f in value.resolved_findings],
        probe=(
            runs_pb2.ProbeChange(
                first_loss_delta=value.probe.first_loss_delta,
                last_loss_delta=value.probe.last_loss_delta,
                gradient_norm_deltas=dict(value.probe.gradient_norm_deltas),
            )
            if value.probe
            else None
        ),
    )
