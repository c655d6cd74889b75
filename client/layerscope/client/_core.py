"""Everything the sync and async clients share that is not I/O: requests, responses, channel options."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from layerscope.client import codec
from layerscope.client.errors import LayerscopeError, data_loss, deadline_exceeded, invalid_argument
from layerscope.client.types import (
    Capture,
    Comparison,
    Finding,
    InputSpec,
    LayerChange,
    LayerDetail,
    ModelInfo,
    Probe,
    ProbeChange,
    ProbeStep,
    Report,
    Run,
    RunPage,
    Summary,
)
from layerscope.v1 import capture_pb2, diagnosis_pb2, models_pb2, runs_pb2, tensor_pb2

Inputs = np.ndarray | Mapping[str, np.ndarray]
UPLOAD_CHUNK = 1024 * 1024

INSPECTOR = "layerscope.v1.Inspector"
HEALTH = "grpc.health.v1.Health"
RETRIED: frozenset[tuple[str, str]] = frozenset(
    {(INSPECTOR, m) for m in ("ListModels", "Predict", "ListRuns", "GetRun", "LoadModel", "GetMonitor")}
    | {(HEALTH, m) for m in ("Check", "Watch", "List")}
)
"""(service, method) of the calls the client retries on UNAVAILABLE: idempotent ones (the server's table,
layerscope.service.grpc.methods, says why each is or is not)."""

SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
"""Round-robin over every address of the target. Retries are the client's own (`Attempts`), not the channel's:
a channel that retries until the deadline passes answers a bare DEADLINE_EXCEEDED, without the UNAVAILABLE
that made it retry (a model's worker that died, and is restarting)."""


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retry policy, as its service config would state it: attempts at most, and a backoff drawn
    uniformly from 0 up to `initial * multiplier**(n - 1)`, capped at `maximum`, before the nth retry."""

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0


RETRY = RetryPolicy()


class Attempts:
    """The attempts of one call within its timeout: how long each may take, and whether to try again.

    A retried call that then runs out of time raises DeadlineExceededError naming the failure it retried
    after (and chained to it: `err.__cause__`, `err.retried_after`), not a bare "Deadline Exceeded".
    """

    def __init__(
        self,
        timeout: float | None,
        retried: bool,
        policy: RetryPolicy = RETRY,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[float], float] = lambda high: random.uniform(0.0, high),
    ) -> None:
        self._timeout = timeout
        self._retried = retried
        self._policy = policy
        self._clock = clock
        self._draw = draw
        self._started = clock()
        self.count = 0
        self.previous: LayerscopeError | None = None

    def remaining(self) -> float | None:
        """The timeout of the next attempt: what is left of the call's (None: no deadline)."""
        self.count += 1
        if self._timeout is None:
            return None
        return max(self._timeout - (self._clock() - self._started), 0.0)

    def backoff(self, error: LayerscopeError) -> float | None:
        """Seconds to wait before the next attempt after `error`; None: raise `outcome(error)` now."""
        policy = self._policy
        if not self._retried or error.code is not grpc.StatusCode.UNAVAILABLE or self.count >= policy.max_attempts:
            return None
        ceiling = min(policy.initial_backoff * policy.multiplier ** (self.count - 1), policy.max_backoff)
        delay = self._draw(ceiling)
        if self._timeout is not None and self._clock() - self._started + delay >= self._timeout:
            return None  # no time left for another attempt: the UNAVAILABLE itself is the answer
        self.previous = error
        return delay

    def outcome(self, error: LayerscopeError) -> LayerscopeError:
        """What the call raises: `error`, or, when time ran out on a retry, a DeadlineExceededError that says
        what the retry was for."""
        if error.code is not grpc.StatusCode.DEADLINE_EXCEEDED or self.previous is None:
            return error
        seconds = "" if self._timeout is None else f" of {self._timeout:g} s"
        return deadline_exceeded(
            f"{error.message or 'Deadline Exceeded'}: the call's timeout{seconds} ran out on attempt {self.count}, "
            f"a retry after {self.previous.code.name}: {self.previous.message}",
            retried_after=self.previous,
        )


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),  # transparent retries only: of attempts that never reached a server
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def credentials(tls: bool | grpc.ChannelCredentials | None) -> grpc.ChannelCredentials | None:
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    return tls


def ref(name: str, version: int | None) -> tensor_pb2.ModelRef:
    return tensor_pb2.ModelRef(name=name, version=version or 0)


def tensors(x: Inputs) -> list[tensor_pb2.Tensor]:
    """The inputs on the wire; an array the wire cannot carry is the caller's InvalidArgumentError."""
    if isinstance(x, Mapping):
        return [_tensor(str(name), a) for name, a in x.items()]
    return [_tensor("", x)]


def _tensor(name: str, value: Any) -> tensor_pb2.Tensor:
    label = f"input {name!r}" if name else "the input"
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, say
        raise invalid_argument(f"Expected {label} to be a NumPy array; received {type(value).__name__}: {exc}") from exc
    if array.dtype.name not in codec.WIRE_DTYPES:
        raise invalid_argument(
            f"Expected {label} to have a dtype among {sorted(codec.WIRE_DTYPES)}; received {array.dtype.name} "
            f"(shape {array.shape}). Convert it first, e.g. x.astype('float32')."
        )
    try:
        return codec.encode(name, array)
    except codec.CodecError as exc:
        raise invalid_argument(f"Expected {label} to be sendable as a tensor: {exc}") from exc


def upload_requests(
    name: str, path: Path, version: int | None, load: bool, transient: bool = False
) -> Iterator[models_pb2.UploadModelRequest]:
    """The header, then the file in chunks (`path` proven readable by `read_path` first)."""
    header = models_pb2.UploadHeader(name=name, version=version or 0, load=load or transient, transient=transient)
    yield models_pb2.UploadModelRequest(header=header)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(UPLOAD_CHUNK), b""):
            yield models_pb2.UploadModelRequest(chunk=block)


STATISTICS = {
    "sampled": capture_pb2.STATISTICS_SAMPLED,
    "exact": capture_pb2.STATISTICS_EXACT,
    "none": capture_pb2.STATISTICS_NONE,
}
"""What `capture(statistics=...)` accepts: sampled (default: every statistic exact but the histogram of a large
tensor), exact (the histogram too, about twice the cost), none (no summaries, only the full tensors asked for)."""


def capture_request(
    name: str,
    x: Inputs,
    layers: str | Sequence[str],
    kinds: Iterable[str],
    full: str | Sequence[str],
    version: int | None,
    run_id: str | None,
    max_tensor_bytes: int,
    statistics: str = "sampled",
    y: Inputs | None = None,
    loss: str | None = None,
) -> capture_pb2.CaptureRequest:
    if statistics not in STATISTICS:
        raise invalid_argument(f"Expected statistics among {sorted(STATISTICS)}; received {statistics!r}.")
    return capture_pb2.CaptureRequest(
        targets=tensors(y) if y is not None else [],
        loss=loss or "",
        statistics=STATISTICS[statistics],
        model=ref(name, version),
        inputs=tensors(x),
        layers=[layers] if isinstance(layers, str) else list(layers),
        kinds=list(kinds),
        full=[full] if isinstance(full, str) else list(full),
        run_id=run_id or "",
        max_tensor_bytes=max_tensor_bytes,
        batch_summaries=True,
        summaries_in_header=True,
    )


def diagnose_request(
    name: str,
    x: Inputs | None,
    version: int | None,
    run_id: str | None,
    y: Inputs | None = None,
    probe_steps: int | None = None,
    loss: str | None = None,
    optimizer: str | None = None,
    learning_rate: float | None = None,
) -> diagnosis_pb2.DiagnoseRequest:
    if y is not None and x is None:
        raise invalid_argument("Expected inputs x with the targets y (targets belong to inputs); received y alone.")
    return diagnosis_pb2.DiagnoseRequest(
        model=ref(name, version),
        inputs=tensors(x) if x is not None else [],
        run_id=run_id or "",
        targets=tensors(y) if y is not None else [],
        probe_steps=probe_steps,
        loss=loss or "",
        optimizer=optimizer or "",
        learning_rate=learning_rate,
    )


def runs_request(
    model: str | None,
    limit: int,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
    code: str | None,
    page_token: str | None,
) -> runs_pb2.ListRunsRequest:
    request = runs_pb2.ListRunsRequest(
        model_name=model or "",
        model_version=version or 0,
        finding_code=code or "",
        limit=limit,
        page_token=page_token or "",
    )
    if since:
        request.since.FromDatetime(since.astimezone(UTC))
    if until:
        request.until.FromDatetime(until.astimezone(UTC))
    return request


# -- responses ----------------------------------------------------------------------------------------------


def model_info(m: models_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(
        name=m.name,
        version=m.version,
        sha256=m.sha256,
        parameters=m.parameters,
        layers=tuple(m.layers),
        inputs=tuple(InputSpec(s.name, _dims(s.shape), s.dtype) for s in m.inputs),
        outputs=tuple(m.outputs),
        device=m.device,
        layer_details=tuple(
            LayerDetail(d.name, d.class_name, _dims(d.output_shape), d.parameters) for d in m.layer_details
        ),
        transient=m.transient,
        max_batch_size=m.max_batch_size,
    )


def _dims(shape: Iterable[int]) -> tuple[int | None, ...]:
    return tuple(None if d < 0 else d for d in shape)


def outputs(messages: Iterable[tensor_pb2.Tensor]) -> dict[str, np.ndarray]:
    try:
        return {t.name: codec.decode(t) for t in messages}
    except codec.CodecError as exc:
        raise data_loss(f"The server sent an output tensor that does not decode: {exc}") from exc


def summary(s: capture_pb2.Summary) -> Summary:
    return Summary(
        count=s.count,
        mean=s.mean,
        std=s.std,
        min=s.min,
        max=s.max,
        zero_fraction=s.zero_fraction,
        nan=s.nan,
        posinf=s.posinf,
        neginf=s.neginf,
        histogram=tuple(s.histogram),
        histogram_range=(s.histogram_low, s.histogram_high),
        unit_activity=tuple(s.unit_activity),
        histogram_sample=s.histogram_sample if s.HasField("histogram_sample") else None,
    )


def finding(f: diagnosis_pb2.Finding) -> Finding:
    return Finding(
        code=f.code,
        severity=f.severity,
        layers=tuple(f.layers),
        message=f.message,
        suggestion=f.suggestion,
        evidence=evidence(f),
    )


def evidence(f: diagnosis_pb2.Finding) -> dict[str, Any]:
    """The JSON copy when the server sent one (it keeps ints as ints); else the Struct, where every number
    is a float (an older server)."""
    if f.evidence_json:
        try:
            value = json.loads(f.evidence_json)
        except ValueError as exc:
            raise data_loss(
                f"Finding {f.code!r}: expected evidence as a JSON object; received bad JSON: {exc}."
            ) from exc
        if not isinstance(value, dict):
            raise data_loss(f"Finding {f.code!r}: expected evidence as a JSON object; received {type(value).__name__}.")
        return value
    struct: dict[str, Any] = MessageToDict(f.evidence)
    return struct


def report(r: diagnosis_pb2.DiagnoseResponse) -> Report:
    return Report(
        run_id=r.run_id,
        findings=tuple(finding(f) for f in r.findings),
        inputs_used=r.inputs_used,
        probe=probe(r.probe) if r.HasField("probe") else None,
    )


def probe(p: diagnosis_pb2.Probe) -> Probe:
    return Probe(
        steps=tuple(
            ProbeStep(
                step=s.step,
                loss=s.loss,
                gradient_norms=dict(s.gradient_norms),
                update_ratios=dict(s.update_ratios),
                dead_fractions=dict(s.dead_fractions),
                saturated_fractions=dict(s.saturated_fractions),
            )
            for s in p.steps
        ),
        optimizer=p.optimizer,
        loss=p.loss,
    )


def run(r: runs_pb2.Run) -> Run:
    summaries: dict[str, dict[str, Summary]] = {}
    for s in r.summaries:
        summaries.setdefault(s.layer, {})[s.kind] = summary(s.summary)
    return Run(
        run_id=r.run_id,
        model_name=r.model_name,
        model_version=r.model_version,
        model_sha256=r.model_sha256,
        kind=r.kind,
        created_at=r.created_at.ToDatetime(tzinfo=UTC),
        batch_size=r.batch_size,
        inputs=r.inputs,
        device=r.device,
        duration_seconds=r.duration_seconds,
        summaries=summaries,
        findings=tuple(finding(f) for f in r.findings),
        probe=probe(r.probe) if r.HasField("probe") else None,
    )


def run_page(r: runs_pb2.ListRunsResponse) -> RunPage:
    return RunPage(tuple(run(x) for x in r.runs), r.next_page_token or None)


def comparison(r: runs_pb2.CompareRunsResponse) -> Comparison:
    return Comparison(
        run_a=r.run_a,
        run_b=r.run_b,
        changes=tuple(
            LayerChange(
                c.layer,
                c.kind,
                c.mean_delta,
                c.std_delta,
                c.zero_fraction_delta,
                c.dead_unit_fraction_delta,
                c.histogram_distance,
            )
            for c in r.changes
        ),
        only_in_a=tuple(r.only_in_a),
        only_in_b=tuple(r.only_in_b),
        new_findings=tuple(finding(f) for f in r.new_findings),
        resolved_findings=tuple(finding(f) for f in r.resolved_findings),
        probe=(
            ProbeChange(r.probe.first_loss_delta, r.probe.last_loss_delta, dict(r.probe.gradient_norm_deltas))
            if r.HasField("probe")
            else None
        ),
    )


class CaptureAssembler:
    """Rebuilds a Capture from the stream: header, summaries, then tensors in chunks."""

    def __init__(self) -> None:
        self._header: capture_pb2.CaptureHeader | None = None
        self._summaries: dict[str, dict[str, Summary]] = {}
        self._classes: dict[str, str] = {}
        self._tensors: dict[str, dict[str, np.ndarray]] = {}
        self._open: tuple[capture_pb2.TensorChunk, np.ndarray, int] | None = None

    def add(self, message: capture_pb2.CaptureResponse) -> None:
        """Take the next message; a stream that does not fit together raises DataLossError."""
        item = message.WhichOneof("item")
        if item == "header":
            self._header = message.header
            for one in message.header.summaries.items:
                self._add_summary(one)
        elif item == "summary":
            self._add_summary(message.summary)
        elif item == "summaries":
            for one in message.summaries.items:
                self._add_summary(one)
        elif item == "chunk":
            self._add_chunk(message.chunk)

    def _add_summary(self, s: capture_pb2.LayerSummary) -> None:
        self._summaries.setdefault(s.layer, {})[s.kind] = summary(s.summary)
        self._classes[s.layer] = s.layer_class

    def _add_chunk(self, chunk: capture_pb2.TensorChunk) -> None:
        # One buffer of the announced size, filled in place: each byte is copied once on arrival.
        if self._open is None:
            if not chunk.layer or not chunk.dtype:
                raise data_loss(
                    "The capture stream is corrupt: expected a tensor's first chunk (with layer, dtype and "
                    f"size); received a chunk of {len(chunk.data)} bytes without them."
                )
            try:
                buffer = np.empty(chunk.total_bytes, np.uint8)
            except (MemoryError, ValueError) as exc:
                raise data_loss(
                    f"The capture stream is corrupt: tensor '{chunk.layer}' announces {chunk.total_bytes} bytes, "
                    f"which cannot be allocated here ({type(exc).__name__})."
                ) from exc
            self._open = (chunk, buffer, 0)
        first, buffer, filled = self._open
        end = filled + len(chunk.data)
        if end > buffer.nbytes:
            raise data_loss(
                f"The capture stream is corrupt: expected {buffer.nbytes} bytes for tensor '{first.layer}' "
                f"({first.kind}), as announced; received at least {end}."
            )
        buffer[filled:end] = np.frombuffer(chunk.data, np.uint8)
        self._open = (first, buffer, end)
        if chunk.last:
            try:
                array = codec.from_buffer(first.dtype, list(first.shape), buffer[:end], first.layer)
            except codec.CodecError as exc:
                raise data_loss(f"The capture stream is corrupt: {exc}") from exc
            self._tensors.setdefault(first.layer, {})[first.kind] = array
            self._open = None

    def result(self) -> Capture:
        if self._header is None:
            raise data_loss("The capture stream ended early: expected a header first; received none.")
        if self._open is not None:
            first, _, filled = self._open
            raise data_loss(
                f"The capture stream ended early: expected {first.total_bytes} bytes for tensor '{first.layer}' "
                f"({first.kind}) up to its last chunk; received {filled}."
            )
        h = self._header
        return Capture(
            run_id=h.run_id,
            device=h.device,
            batch_size=h.batch_size,
            duration_seconds=h.duration_seconds,
            outputs=outputs(h.outputs),
            summaries=self._summaries,
            tensors=self._tensors,
            classes=self._classes,
        )


def read_path(path: str | Path) -> Path:
    """The file to upload, proven readable before the call starts (inside the request stream an unreadable
    file would only cancel the call): else the caller's InvalidArgumentError."""
    p = Path(path)
    if not p.is_file():
        what = "a folder" if p.is_dir() else "not there"
        raise invalid_argument(f"Expected a .keras file to upload; received {str(p)!r}, which is {what}.")
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        raise invalid_argument(
            f"Expected a readable .keras file to upload; received {str(p)!r}: {exc.strerror or exc}."
        ) from exc
    return p
