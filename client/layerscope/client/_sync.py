"""The blocking client. Each method builds its request in _core, calls one stub, and converts the answer."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import grpc.experimental
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerscope.client import _core, _monitor
from layerscope.client.errors import LayerscopeError, translate
from layerscope.client.types import Capture, Comparison, ModelInfo, MonitorStatus, Report, Run, RunPage
from layerscope.v1 import inspector_pb2_grpc, models_pb2, monitor_pb2, runs_pb2

DEFAULT_KINDS = ("activation", "kernel", "bias")


class Client:
    """A connection to a layerscope server. Every failure raises a `LayerscopeError` subclass.

    `target` is `host:port` or any gRPC target (`dns:///name:port` spreads calls over every address with
    round-robin). `token` is a bearer token; `tls` is True for the system roots or `grpc.ChannelCredentials`.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials | None = None,
        timeout: float | None = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        creds = _core.credentials(tls)
        # Server-streaming calls (Capture, Watch) driven by the calling thread: by default grpc starts a
        # thread per such call, 2.5 ms of a small capture's 11 on a busy 2-core machine.
        single_threaded = (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)
        options = [*_core.channel_options(max_message_bytes), single_threaded]
        self._channel = grpc.secure_channel(target, creds, options) if creds else grpc.insecure_channel(target, options)
        self._stub = inspector_pb2_grpc.InspectorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = _core.metadata(token)
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. `with` (or `async with`) does this for you."""
        self._channel.close()

    def _call(self, method: str, request: Any, service: str = _core.INSPECTOR) -> Any:
        """One call of `service`'s `method`, retried on UNAVAILABLE within the timeout where `_core.RETRIED`
        says so; every failure as its LayerscopeError."""
        call = getattr(self._health if service == _core.HEALTH else self._stub, method)
        attempts = _core.Attempts(self.timeout, (service, method) in _core.RETRIED)
        while True:
            try:
                return call(request, timeout=attempts.remaining(), metadata=self._metadata)
            except grpc.RpcError as err:
                error = translate(err)
                delay = attempts.backoff(error)
                if delay is None:
                    raise attempts.outcome(error) from (attempts.previous or err)
            time.sleep(delay)

    def health(self, service: str = "") -> str:
        """SERVING or NOT_SERVING, for the whole server (`service=""`) or one service by its full name.

        The server says SERVING once it answers calls (schema checked, repository scanned), while the models it
        found may still be loading, and NOT_SERVING before that and while it shuts down. `layerscope.models` says
        SERVING once those models have loaded (or failed); `layerscope.model.<name>` while a version of that model
        is loaded (NotFoundError for a name the server has never seen).
        """
        reply = self._call("Check", health_pb2.HealthCheckRequest(service=service), _core.HEALTH)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def upload_model(
        self,
        name: str,
        path: str | Path,
        version: int | None = None,
        load: bool = True,
        transient: bool = False,
    ) -> ModelInfo:
        """Admin: stream a local .keras file into the server's repository; returns its ModelInfo.

        `version` defaults to the next free number; `load=False` stores it without loading. The server
        scans the archive before Keras sees it: Lambda layers and custom objects are refused
        (InvalidArgumentError), as is a version that exists (AlreadyExistsError).

        `transient=True` loads the model for a while without storing it (what `layerscope audit --server` does):
        it never enters the repository, its runs are kept with kind "audit" and count in no metric or live
        monitoring, and it goes when unloaded (or after the server's `transient_model_seconds` unused). Its
        name may not be one the server stores or has loaded (AlreadyExistsError).
        """
        requests = _core.upload_requests(name, _core.read_path(path), version, load, transient)
        return _core.model_info(self._call("UploadModel", requests))

    def load_model(self, name: str, version: int | None = None) -> ModelInfo:
        """Admin: load a model stored in the repository; the newest version when `version` is None.

        Raises NotFoundError for an unknown name or version.
        """
        return _core.model_info(self._call("LoadModel", models_pb2.LoadModelRequest(model=_core.ref(name, version))))

    def list_models(self) -> list[ModelInfo]:
        """Every loaded model version: name, version, sha256, parameters, layer names and details."""
        reply = self._call("ListModels", models_pb2.ListModelsRequest())
        return [_core.model_info(m) for m in reply.models]

    def unload_model(self, name: str, version: int | None = None, remove: bool = False) -> ModelInfo:
        """Admin: unload a version (the newest loaded when None); `remove` also deletes its archive.

        A removed version's number is never reused.
        """
        request = models_pb2.UnloadModelRequest(model=_core.ref(name, version), remove=remove)
        return _core.model_info(self._call("UnloadModel", request).model)

    def predict(self, name: str, x: _core.Inputs, version: int | None = None) -> dict[str, np.ndarray]:
        """A plain forward pass: `{output_name: array}`.

        `x` is one array (batch first) or a dict of arrays by input name for a multi-input model; dtypes
        and shapes must fit the model's inputs (InvalidArgumentError says what was expected).
        """
        request = models_pb2.PredictRequest(model=_core.ref(name, version), inputs=_core.tensors(x))
        return _core.outputs(self._call("Predict", request).outputs)

    def capture(
        self,
        name: str,
        x: _core.Inputs,
        layers: str | Sequence[str] = "*",
        kinds: Iterable[str] = DEFAULT_KINDS,
        full: str | Sequence[str] = (),
        version: int | None = None,
        run_id: str | None = None,
        max_tensor_bytes: int = 0,
        statistics: str = "sampled",
        y: _core.Inputs | None = None,
        loss: str | None = None,
    ) -> Capture:
        """Run `x` through the model and summarise what each selected layer holds; one stored run.

        `layers`: glob patterns (fnmatch: `*`, `?`, `[ab]`) over layer paths or class names: `"*"` is every
        layer, `"block1/*"` the layers of a nested model, `"Conv2D"` every Conv2D, `["dense", "conv*"]` several.
        `kinds`, any of:
          - `"activation"`: each layer's output (a layer called twice gives `name` and `name:1`);
          - `"input"`: each layer's input;
          - `"kernel"`: every weight whose role is a kernel (Dense/Conv kernels, an LSTM's
            `recurrent_kernel`, ...);
          - `"bias"`: every bias;
          - `"other"`: all other weights: BatchNormalization's `gamma`, `beta`, `moving_mean`,
            `moving_variance`, Embedding's `embeddings`, ...
        A weight is keyed by its own name (`kernel`, `gamma`) when that is unique in its layer, else by the
        sublayer that owns it: Bidirectional(LSTM) gives `forward_lstm/kernel` and `backward_lstm/kernel`,
        MultiHeadAttention `query/kernel`, `key/bias`, ...
        `full`: glob patterns as for `layers`; those layers' full tensors come back too (`cap.tensors`),
        bounded by `max_tensor_bytes` (0: the server's limit). `run_id` makes a retry idempotent.
        `statistics`: "sampled" (default: every statistic exact except the histogram of a tensor above 16,384
        values, which bins a fixed, deterministic sample: `Summary.estimated`, `Summary.histogram_sample`),
        "exact" (bins every value, about twice the cost), or "none" (no summaries, only the `full` tensors).
        Gradients of the loss on targets `y` (one array per model output, given like `x`): kinds
        `"gradient"` (of each layer's output), `"kernel_gradient"`, `"bias_gradient"`; `loss` is a Keras loss
        identifier ("mse", "categorical_crossentropy", ...), else the model's compiled loss.

        Returns a Capture: `summaries[layer][kind]` (Summary: count, mean, std, min, max, zero_fraction,
        nan, posinf, neginf, histogram, unit_activity, histogram_sample), `tensors[layer][kind]`, `outputs`, `run_id`.
        """
        request = _core.capture_request(
            name, x, layers, kinds, full, version, run_id, max_tensor_bytes, statistics, y, loss
        )
        assembler = _core.CaptureAssembler()
        stream = self._stub.Capture(request, timeout=self.timeout, metadata=self._metadata)
        try:
            for message in stream:
                assembler.add(message)
        except grpc.RpcError as err:
            raise translate(err) from err
        except LayerscopeError:
            stream.cancel()  # a corrupt stream: stop the server sending the rest
            raise
        return assembler.result()

    def diagnose(
        self,
        name: str,
        x: _core.Inputs | None = None,
        version: int | None = None,
        run_id: str | None = None,
        y: _core.Inputs | None = None,
        probe_steps: int | None = None,
        loss: str | None = None,
        optimizer: str | None = None,
        learning_rate: float | None = None,
    ) -> Report:
        """Static and runtime findings for a model; without `x` the server generates probe inputs.

        Returns a Report whose findings carry code, severity, layers, message, suggestion and evidence;
        the run is stored (`report.run_id`). With targets `y` for `x` the training rules run too, on the
        gradients of the loss (`loss`, else the compiled one) and on a probe of `probe_steps` optimizer steps
        on a copy of the weights (None: the server's default, 0: none) with `optimizer`/`learning_rate`, else
        the compiled ones: `report.probe` holds the loss, gradient norms, update ratios, dead and saturated
        fractions of every step.
        """
        request = _core.diagnose_request(name, x, version, run_id, y, probe_steps, loss, optimizer, learning_rate)
        return _core.report(self._call("Diagnose", request))

    def runs_page(
        self,
        model: str | None = None,
        limit: int = 20,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        code: str | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """One page of stored runs, newest first, with `next_page_token` for the next page (None at the end).

        Filters: model name, version, a time window (`since`, `until`, timezone-aware) and a finding `code`.
        """
        request = _core.runs_request(model, limit, version, since, until, code, page_token)
        return _core.run_page(self._call("ListRuns", request))

    def runs(self, model: str | None = None, limit: int = 20, **filters: Any) -> list[Run]:
        """The newest stored runs (without summaries; `get_run` has them). Filters as for `runs_page`."""
        return list(self.runs_page(model, limit, **filters).runs)

    def get_run(self, run_id: str) -> Run:
        """One stored run with its summaries and findings; NotFoundError for an unknown id."""
        return _core.run(self._call("GetRun", runs_pb2.GetRunRequest(run_id=run_id)))

    def compare(self, run_a: str, run_b: str) -> Comparison:
        """Per layer and kind, what changed from run_a to run_b; and which findings came or went.

        Both runs must be of one model (any two versions); runs of two models raise InvalidArgumentError.
        """
        request = runs_pb2.CompareRunsRequest(run_a=run_a, run_b=run_b)
        return _core.comparison(self._call("CompareRuns", request))

    def monitor(self, name: str, version: int | None = None, limit: int = 12) -> MonitorStatus:
        """Live-traffic monitoring of a loaded model: its sample rate, reference, the newest `limit` windows
        (every replica's) with per-layer drift and health, and what was reported at once (NaN, dead layers)."""
        request = monitor_pb2.GetMonitorRequest(model=_core.ref(name, version), limit=limit)
        return _monitor.status(self._call("GetMonitor", request))

    def set_reference(self, name: str, run_id: str | None = None, version: int | None = None) -> MonitorStatus:
        """Admin: judge drift against a stored window (`w-...`, `h-...`) or capture run from now on; with no
        id, a new reference is made from the next sampled requests."""
        request = monitor_pb2.SetReferenceRequest(model=_core.ref(name, version), run_id=run_id or "")
        return _monitor.status(self._call("SetReference", request))
