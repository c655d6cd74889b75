"""The capture engine: one compiled function per (selection, input signature) for one loaded model.

The forward pass, the hooks' recorded tensors and their summaries live in the same `tf.function`, so the
summaries are computed on the device next to the activations and only small vectors (plus the full tensors
asked for) come back. The batch dimension is left free, so every batch size shares one trace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from layerscope.service import cancellation
from layerscope.service.capture.hooks import Recorded, recording, walk_layers
from layerscope.service.capture.losses import build_loss
from layerscope.service.capture.probe import ProbeRunner, probe_cost
from layerscope.service.capture.stats import activity_size, frozen_histogram, summarize_tensors, unpack
from layerscope.service.capture.weights import named_weights, weight_values
from layerscope.service.domain.capture import (
    CaptureReply,
    CaptureRequest,
    CaptureResult,
    ProbeOptions,
    check_full_size,
)
from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.selection import Selection, variable_role
from layerscope.service.domain.summary import STATISTICS_LEVELS, Summary, summarize
from layerscope.service.domain.training import (
    LOSSES,
    LossSpec,
    ProbeResult,
    TargetInfo,
    compiled_losses,
    named_loss,
    probe_optimizer,
    target_facts,
    target_info,
    target_mismatch,
)
from layerscope.service.errors import InvalidInput, LimitExceeded
from layerscope.service.runtime.native import SummaryOpLoader

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CapturePoint:
    point: str
    path: str
    class_name: str
    kinds: tuple[str, ...]
    shapes: tuple[tuple[int | None, ...], ...]


@dataclass
class _Compiled:
    function: Any
    points: list[CapturePoint] = field(default_factory=list)
    full_keys: list[tuple[str, str]] = field(default_factory=list)
    full_specs: list[tuple[tuple[int | None, ...], int]] = field(default_factory=list)
    """Traced shape (batch free) and item size of each full tensor, in the order of `full_keys`."""
    frozen_points: list[str] = field(default_factory=list)
    """Capture points whose activation is also counted on frozen edges, in the order of the function's output."""
    activity_sizes: list[int] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)
    """Class name of every capture point traced, summarised or not."""


def default_device() -> str:
    """The first GPU TensorFlow sees, else the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/device:CPU:0"


MAX_TRACES = 32
"""Compiled capture functions kept per model; the least recently used goes first, so callers who vary
selections or input shapes cannot grow the server's memory without bound."""


class CaptureEngine:
    """Runs one Keras model with per-layer capture. Thread-safe; tracing is serialised per engine."""

    def __init__(
        self,
        model: keras.Model,
        device: str | None = None,
        max_traces: int = MAX_TRACES,
        summary_op: SummaryOpLoader | None = None,
        compile_config: Mapping[str, Any] | None = None,
        max_probe_bytes: int | None = None,
        probe_idle_seconds: float | None = None,
    ) -> None:
        """`max_probe_bytes`: what a kept training probe may hold (clone and optimizer slots), None: no bound;
        `probe_idle_seconds`: how long it is kept after its last use, None: until the engine goes."""
        self.model = model
        self.compile_config = compile_config
        """The compile config read as data (models load with compile=False): where the compiled loss is."""
        self.device = device or default_device()
        self._summary_op = summary_op or SummaryOpLoader()
        self.layers = list(walk_layers(model))
        self.inputs = _input_specs(model)
        self.output_names = _output_names(model)
        self.output_specs = _output_specs(model, self.output_names)
        self._outputs_known = _has_symbolic_outputs(model, self.output_names)
        self._max_traces = max_traces
        self._compiled: OrderedDict[tuple[Any, ...], _Compiled] = OrderedDict()
        self._predictors: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._probes: OrderedDict[tuple[Any, ...], ProbeRunner] = OrderedDict()
        """At most one kept: a runner holds a full copy of the model's variables and the optimizer's slots."""
        self._max_probe_bytes = max_probe_bytes
        self._probe_idle = probe_idle_seconds
        self._probe_used = 0.0
        self._release: threading.Timer | None = None
        self.probe_bytes = 0
        """Bytes the kept probe runner holds (clone and slots); 0 when none is kept."""
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._weights: dict[str, dict[str, Summary]] | None = None
        self.traces = 0
        """How many times a function was traced: a test proves repeated calls never retrace."""

    # -- inputs -------------------------------------------------------------------------------------------

    def prepare(self, inputs: Arrays) -> list[np.ndarray]:
        """Check the caller's arrays against the input specs; the message names expected and received."""
        expected = {spec.name for spec in self.inputs}
        if len(self.inputs) == 1 and len(inputs) == 1:
            inputs = {self.inputs[0].name: next(iter(inputs.values()))}
        if set(inputs) != expected:
            raise InvalidInput(
                f"Model '{self.model.name}' expects inputs {sorted(expected)}; received {sorted(inputs)}."
            )
        arrays = [_conform(spec, inputs[spec.name]) for spec in self.inputs]
        batches = {a.shape[0] for a in arrays}
        if len(batches) != 1:
            raise InvalidInput(f"Expected one batch size across inputs; received {sorted(batches)}.")
        return arrays

    @property
    def layer_classes(self) -> list[tuple[str, str]]:
        """(path, class name) of every layer: what a caller's names are checked against, as plain data."""
        return [(path, type(layer).__name__) for path, layer in self.layers]

    def prepare_targets(self, targets: Arrays, batch: int) -> list[np.ndarray]:
        """The caller's targets `y`, one per model output (encoded like the inputs: a name per output, or
        one unnamed array for a single output), each numeric with the inputs' batch size."""
        names = self.output_names
        if len(names) == 1 and len(targets) == 1:
            targets = {names[0]: next(iter(targets.values()))}
        if set(targets) != set(names):
            raise InvalidInput(
                f"Model '{self.model.name}' expects targets for outputs {sorted(names)}; received {sorted(targets)}."
            )
        arrays = []
        for name in names:
            y = np.asarray(targets[name])
            if y.dtype.kind not in "fiub" or y.ndim == 0 or y.shape[0] != batch:
                raise InvalidInput(
                    f"Target '{name}' expects a numeric array with the inputs' batch of {batch}; received "
                    f"{y.dtype.name}{list(y.shape)}."
                )
            arrays.append(np.ascontiguousarray(y, dtype=np.float32 if y.dtype.kind in "fb" else np.int64))
        return arrays

    def loss_specs(self, loss: str | None) -> tuple[LossSpec, ...]:
        """The loss a gradient or probe uses: the one named, else the compiled one; neither is refused."""
        outputs = len(self.output_names)
        if loss:
            return (named_loss(loss),) * outputs
        compiled = compiled_losses(self.compile_config, outputs)
        if compiled is None:
            raise InvalidInput(
                f"Model '{self.model.name}' has no compiled loss layerscope can use (it reads Keras loss "
                f"identifiers from the compile config); expected a loss named in the request, one of "
                f"{sorted(LOSSES)}; received none."
            )
        return tuple(compiled)

    # -- training probe ---------------------------------------------------------------------------------

    def probe(
        self,
        inputs: Arrays,
        targets: Arrays,
        steps: int,
        loss: str | None = None,
        optimizer: str | None = None,
        learning_rate: float | None = None,
    ) -> ProbeResult:
        """`steps` optimizer steps on a clone of the model (the served weights are only read), with the
        named or compiled loss and optimizer (else Adam at 1e-3); a measurement per step."""
        arrays = self.prepare(inputs)
        ys = self.prepare_targets(targets, int(arrays[0].shape[0]))
        losses = self.loss_specs(loss)
        self.check_targets(ys, losses)
        return self._probe(arrays, ys, losses, ProbeOptions(steps, optimizer, learning_rate))

    def _probe(
        self, arrays: list[np.ndarray], ys: list[np.ndarray], losses: tuple[LossSpec, ...], options: ProbeOptions
    ) -> ProbeResult:
        spec = probe_optimizer(self.compile_config, options.optimizer, options.learning_rate)
        steps = options.steps
        # One probe at a time per model (the runner's clone is reused), under its own lock: a probe hooks only
        # into the clone, so captures of the served model need not wait for its steps.
        with self._probe_lock:
            key = (losses, spec)
            if key not in self._probes:
                self._probes.clear()  # the one kept goes before another is built: never two at once
                self.probe_bytes = 0
                cost = probe_cost(self.model, spec)
                if self._max_probe_bytes is not None and cost.total > self._max_probe_bytes:
                    raise LimitExceeded(
                        f"Expected a training probe that keeps at most {self._max_probe_bytes} bytes "
                        f"(LAYERSCOPE_MAX_PROBE_BYTES); model '{self.model.name}' would keep {cost.total}: a clone "
                        f"of its weights ({cost.clone} bytes) and {spec.describe()}'s {cost.per_weight} slot(s) per "
                        f"trainable weight ({cost.slots} bytes). Diagnose with probe_steps=0 for gradients alone."
                    )
                _remember(self._probes, key, ProbeRunner(self.model, losses, spec, self.device, _model_args), 1)
                self.probe_bytes = cost.total
            try:
                return self._probes[key].run(arrays, ys, steps)
            finally:
                self._probe_used = time.monotonic()
                self._schedule_release()

    def _schedule_release(self) -> None:
        """Let the kept probe go once it has been idle for `probe_idle_seconds` (the timer holds the engine
        weakly: an unloaded model is not kept alive by its timer)."""
        if self._probe_idle is None:
            return
        if self._release is not None:
            self._release.cancel()
        self._release = threading.Timer(self._probe_idle, _release_idle_probe, (weakref.ref(self),))
        self._release.daemon = True
        self._release.start()

    def release_idle_probe(self) -> bool:
        """Drop the kept probe if it has been idle long enough (a probe running now keeps it); True if dropped."""
        if self._probe_idle is None or not self._probe_lock.acquire(blocking=False):
            return False
        try:
            if not self._probes or time.monotonic() - self._probe_used < self._probe_idle:
                return False
            self._probes.clear()
            self.probe_bytes = 0
            return True
        finally:
            self._probe_lock.release()

    # -- plain forward pass -----------------------------------------------------------------------------

    def predict(self, inputs: Arrays) -> dict[str, np.ndarray]:
        arrays = self.prepare(inputs)
        function = self._predictor(arrays)
        with tf.device(self.device):
            outputs = _call(function, arrays)
        return dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True))

    def _predictor(self, arrays: list[np.ndarray]) -> Any:
        key = _signature_key(arrays)
        with self._lock:
            if key not in self._predictors:
                model = self.model

                def forward(xs: list[tf.Tensor]) -> list[tf.Tensor]:
                    self.traces += 1
                    outputs: list[tf.Tensor] = tf.nest.flatten(model(_model_args(model, xs), training=False))
                    return outputs

                # The concrete function: calling it skips tf.function's argument binding, about a
                # millisecond of Python per call, which is most of a small model's forward pass.
                function = tf.function(forward, input_signature=[_specs(arrays)], autograph=False)
                _remember(self._predictors, key, function.get_concrete_function(), self._max_traces)
            self._predictors.move_to_end(key)
            return self._predictors[key]

    # -- capture ----------------------------------------------------------------------------------------

    def run_on_device(
        self,
        inputs: Arrays,
        selection: Selection,
        statistics: str = "sampled",
        targets: Arrays | None = None,
        loss: str | None = None,
    ) -> tuple[_Compiled, list[np.ndarray], Any]:
        """Run the compiled capture; its results stay on the device (the benchmark times this alone).

        `statistics` is one of STATISTICS_LEVELS. On the TensorFlow-ops path the short variant assumes
        finite values and says whether they were; only when they were not does the masked variant run (and
        get traced, the first time a model produces NaN or Inf). The fused kernel needs no second run.
        """
        _check_statistics(statistics)
        arrays = self.prepare(inputs)
        ys, losses = self._training_arguments(arrays, selection, targets, loss)
        compiled, (outputs, packed, fulls, _) = self._run_compiled(arrays, selection, statistics, ys, losses)
        return compiled, arrays, (outputs, packed, fulls)

    def _run_compiled(
        self,
        arrays: list[np.ndarray],
        selection: Selection,
        statistics: str,
        ys: list[np.ndarray],
        losses: tuple[LossSpec, ...],
        edges: tuple[tuple[str, tuple[float, ...]], ...] = (),
    ) -> tuple[_Compiled, Any]:
        args = [arrays, ys] if ys else [arrays]
        compiled = self._compile(arrays, selection, statistics, masked=False, ys=ys, losses=losses, edges=edges)
        with tf.device(self.device):
            outputs, packed, fulls, frozen, all_finite = _call(compiled.function, *args)
            if not bool(all_finite):
                compiled = self._compile(arrays, selection, statistics, masked=True, ys=ys, losses=losses, edges=edges)
                outputs, packed, fulls, frozen, _ = _call(compiled.function, *args)
        return compiled, (outputs, packed, fulls, frozen)

    def _training_arguments(
        self, arrays: list[np.ndarray], selection: Selection, targets: Arrays | None, loss: str | None
    ) -> tuple[list[np.ndarray], tuple[LossSpec, ...]]:
        """Targets and loss for gradient kinds; none for a capture without them (targets are then unused)."""
        if not selection.gradients:
            return [], ()
        if not targets:
            raise InvalidInput(
                f"Expected targets y with the gradient kinds {sorted(selection.gradients)} (gradients are of the "
                "loss on them); received no targets."
            )
        ys = self.prepare_targets(targets, int(arrays[0].shape[0]))
        losses = self.loss_specs(loss)
        self.check_targets(ys, losses)
        return ys, losses

    def check_targets(self, ys: list[np.ndarray], losses: tuple[LossSpec, ...]) -> None:
        """Targets the loss can score against the outputs, or InvalidInput naming what was expected and received:
        a wrong shape must not reach tracing (where it is a shape error, or a silent broadcast)."""
        if not self._outputs_known:  # a subclassed model's output shapes are known only once it has run
            return
        for name, spec, y, spec_loss in zip(self.output_names, self.output_specs, ys, losses, strict=True):
            integral, low, high = target_facts(y)
            mismatch = target_mismatch(spec.shape, spec_loss, tuple(y.shape), low, high, integral)
            if mismatch is not None:
                expected, received = mismatch
                raise InvalidInput(
                    f"Target '{name}' of model '{self.model.name}' (output shape {_shape(spec.shape)}): expected "
                    f"{expected}; received {received}."
                )

    @property
    def fused_statistics(self) -> bool:
        """Whether summaries come from the fused kernel (CPU, kernel built) rather than TensorFlow ops."""
        return self._fused() is not None

    def _fused(self) -> Any:
        return self._summary_op.load() if "CPU" in self.device.upper() else None

    def run(self, request: CaptureRequest) -> CaptureReply:
        """Everything one Capture, Diagnose or sampled Predict needs, in one call: the inputs (and targets)
        prepared once, the full-tensor budget checked on the traced shapes before the model runs, the capture,
        and with `evidence` the input and target statistics, with `probe` a training probe.

        With `evidence`, targets the loss cannot score against the outputs (a wrong width, class ids for a
        one-hot loss or the reverse) are no error: only the activations are captured, and the target statistics
        let the rule target-loss-mismatch say what was expected and received. Without it they are refused."""
        selection, statistics = request.selection, request.statistics
        _check_statistics(statistics)
        arrays = self.prepare(request.inputs)
        targets: dict[str, TargetInfo] = {}
        if request.evidence and request.targets:
            ys = self.prepare_targets(request.targets, int(arrays[0].shape[0]))
            losses = self.loss_specs(request.loss)
            outputs = zip(self.output_names, ys, self.output_specs, strict=True)
            targets = {name: target_info(y, spec.shape) for name, y, spec in outputs}
            if any(info.mismatch(loss) is not None for info, loss in zip(targets.values(), losses, strict=False)):
                kinds = selection.kinds - selection.gradients
                result = self._capture(arrays, dataclasses.replace(selection, kinds=kinds), statistics, [], ())
                return CaptureReply(result, self._input_summaries(arrays), targets, losses)
        ys, losses = self._training_arguments(arrays, selection, request.targets, request.loss)
        if request.max_full_bytes is not None:
            compiled = self._compile(arrays, selection, statistics, masked=False, ys=ys, losses=losses)
            check_full_size(self._full_bytes(compiled, arrays, selection), request.max_full_bytes, request.output_bytes)
        result = self._capture(arrays, selection, statistics, ys, losses, request.frozen_edges)
        if not request.evidence and request.probe is None:
            return CaptureReply(result)
        inputs = self._input_summaries(arrays)
        if not request.targets:
            return CaptureReply(result, inputs)
        if not ys:  # a selection without gradient kinds: the targets are prepared (and checked) for the evidence
            ys, losses = self.prepare_targets(request.targets, int(arrays[0].shape[0])), self.loss_specs(request.loss)
            self.check_targets(ys, losses)
        if not targets:
            outputs = zip(self.output_names, ys, self.output_specs, strict=True)
            targets = {name: target_info(y, spec.shape) for name, y, spec in outputs}
        probe = None
        if request.probe is not None and request.probe.steps > 0:
            cancellation.check()  # the capture took its time: a call that has ended needs no probe
            probe = self._probe(arrays, ys, losses, request.probe)
        return CaptureReply(result, inputs, targets, losses, probe)

    def _input_summaries(self, arrays: list[np.ndarray]) -> dict[str, Summary]:
        """The prepared inputs' statistics: what the diagnosis rules read of the inputs (NaN in them, say)."""
        return {spec.name: summarize(a) for spec, a in zip(self.inputs, arrays, strict=True)}

    def warm(self, request: CaptureRequest) -> None:
        self.run(request)

    def capture(
        self,
        inputs: Arrays,
        selection: Selection,
        statistics: str = "sampled",
        targets: Arrays | None = None,
        loss: str | None = None,
    ) -> CaptureResult:
        """Summaries of the selected layers (none with statistics="none"), full tensors of those in `full`.

        Gradient kinds need `targets` (one array per output) and a loss: `loss` (a Keras identifier) or the
        compiled one."""
        return self.run(CaptureRequest(inputs, selection, statistics, targets, loss)).result

    def _capture(
        self,
        arrays: list[np.ndarray],
        selection: Selection,
        statistics: str,
        ys: list[np.ndarray],
        losses: tuple[LossSpec, ...],
        edges: tuple[tuple[str, tuple[float, ...]], ...] = (),
    ) -> CaptureResult:
        compiled, (outputs, packed, fulls, frozen) = self._run_compiled(
            arrays, selection, statistics, ys, losses, edges
        )
        result = CaptureResult(
            outputs=dict(zip(self.output_names, (np.asarray(o) for o in outputs), strict=True)),
            batch_size=int(arrays[0].shape[0]),
        )
        counts, floats, histograms, activities = (np.asarray(p) for p in packed)
        summaries = iter(unpack((counts, floats, histograms, activities), compiled.activity_sizes))
        for point in compiled.points:
            result.classes[point.point] = point.class_name
            kinds = result.summaries.setdefault(point.point, {})
            for kind in point.kinds:
                kinds[kind] = next(summaries)
        for (point_name, kind), tensor in zip(compiled.full_keys, fulls, strict=True):
            result.classes.setdefault(point_name, compiled.classes[point_name])
            result.tensors.setdefault(point_name, {})[kind] = np.asarray(tensor)
        result.frozen = {
            point: np.asarray(counts) for point, counts in zip(compiled.frozen_points, frozen, strict=True)
        }
        self._add_weights(result, selection, summaries=statistics != "none")
        return result

    def _compile(
        self,
        arrays: list[np.ndarray],
        selection: Selection,
        statistics: str,
        masked: bool,
        ys: list[np.ndarray] | None = None,
        losses: tuple[LossSpec, ...] = (),
        edges: tuple[tuple[str, tuple[float, ...]], ...] = (),
    ) -> _Compiled:
        ys = ys or []
        key = (selection, _signature_key(arrays), statistics, masked, _signature_key(ys), losses, edges)
        with self._lock:
            if key not in self._compiled:
                built = self._build(arrays, selection, statistics, masked, ys, losses, edges)
                _remember(self._compiled, key, built, self._max_traces)
            self._compiled.move_to_end(key)
            return self._compiled[key]

    def full_bytes(
        self,
        inputs: Arrays,
        selection: Selection,
        statistics: str = "sampled",
        targets: Arrays | None = None,
        loss: str | None = None,
    ) -> int:
        """The bytes of the full tensors `capture` would return, from the traced shapes, before running it."""
        arrays = self.prepare(inputs)
        ys, losses = self._training_arguments(arrays, selection, targets, loss)
        compiled = self._compile(arrays, selection, statistics, masked=False, ys=ys, losses=losses)
        return self._full_bytes(compiled, arrays, selection)

    def _full_bytes(self, compiled: _Compiled, arrays: list[np.ndarray], selection: Selection) -> int:
        batch = int(arrays[0].shape[0])
        activations = sum(
            math.prod(batch if d is None else d for d in shape) * itemsize for shape, itemsize in compiled.full_specs
        )
        weights = sum(
            math.prod(v.shape) * np.dtype(v.dtype).itemsize
            for path, layer in self.layers
            if not isinstance(layer, keras.Model) and selection.wants_full(path, type(layer).__name__)
            for name, v in named_weights(layer).items()
            if selection.selects(path, type(layer).__name__) and selection.wants_variable(name)
        )
        return int(activations + weights)

    def _build(
        self,
        arrays: list[np.ndarray],
        selection: Selection,
        statistics: str,
        masked: bool,
        ys: list[np.ndarray],
        losses: tuple[LossSpec, ...],
        edges: tuple[tuple[str, tuple[float, ...]], ...] = (),
    ) -> _Compiled:
        compiled = _Compiled(function=None)
        frozen_edges = dict(edges)
        summarize_all = statistics != "none"
        fused = self._fused() if summarize_all else None
        chosen = [(p, layer) for p, layer in self.layers if _selected(selection, p, layer)]
        wanted = {"activation", "input"} & selection.kinds
        wanted |= selection.gradients
        variables = _gradient_variables(chosen, selection)
        loss_fn = build_loss(losses) if losses else None
        model = self.model

        def run(xs: list[tf.Tensor], ys: list[tf.Tensor] | None = None) -> tuple[Any, ...]:
            self.traces += 1
            compiled.points.clear()
            compiled.full_keys.clear()
            compiled.full_specs.clear()
            compiled.classes.clear()
            compiled.frozen_points.clear()
            tape = tf.GradientTape() if loss_fn is not None else None
            with tape or contextlib.nullcontext():
                if tape is not None:  # so that the output of a layer with no variable upstream has a gradient
                    tape.watch([x for x in xs if x.dtype.is_floating])
                with recording(chosen if wanted else [], take_inputs="input" in wanted) as records:
                    outputs = tf.nest.flatten(model(_model_args(model, xs), training=False))
                loss_value = loss_fn(ys or [], outputs) if loss_fn is not None else None
            if tape is not None and loss_value is not None:
                _add_gradients(tape, loss_value, records, variables)
            compiled.activity_sizes.clear()
            summarized: list[tf.Tensor] = []
            fulls: list[tf.Tensor] = []
            frozen: list[tf.Tensor] = []
            for record in records:
                kinds = _kinds_of(record, wanted)
                full = selection.wants_full(record.point, record.class_name)
                if not kinds or not (summarize_all or full):
                    continue  # with statistics="none", a layer not taken in full costs nothing
                compiled.classes[record.point] = record.class_name
                if not summarize_all:
                    for kind in kinds:
                        tensor = record.tensors[kind]
                        fulls.append(tf.identity(tensor))
                        compiled.full_keys.append((record.point, kind))
                        compiled.full_specs.append((tuple(tensor.shape.as_list()), tensor.dtype.size))
                    continue
                compiled.points.append(
                    CapturePoint(
                        record.point,
                        record.path,
                        record.class_name,
                        tuple(kinds),
                        tuple(tuple(record.tensors[k].shape.as_list()) for k in kinds),
                    )
                )
                if record.point in frozen_edges and "activation" in kinds:
                    frozen.append(frozen_histogram(record.tensors["activation"], frozen_edges[record.point]))
                    compiled.frozen_points.append(record.point)
                for kind in kinds:
                    summarized.append(record.tensors[kind])
                    compiled.activity_sizes.append(activity_size(record.tensors[kind]))
                    if full:
                        tensor = record.tensors[kind]
                        fulls.append(tf.identity(tensor))
                        compiled.full_keys.append((record.point, kind))
                        compiled.full_specs.append((tuple(tensor.shape.as_list()), tensor.dtype.size))
            packed, all_finite = summarize_tensors(summarized, masked, exact=statistics == "exact", fused=fused)
            return outputs, packed, fulls, frozen, all_finite

        # No autograph: nothing here branches on tensor values, and converting every Keras call is slow.
        # Traced now, under the lock, so the hooks are never installed while another call runs the model;
        # kept as the concrete function, whose calls skip tf.function's argument binding.
        if ys:
            function = tf.function(run, input_signature=[_specs(arrays), _specs(ys)], autograph=False)
        else:  # the signature must name every argument the traced function takes

            def forward(xs: list[tf.Tensor]) -> tuple[Any, ...]:
                return run(xs)

            function = tf.function(forward, input_signature=[_specs(arrays)], autograph=False)
        compiled.function = function.get_concrete_function()
        return compiled

    # -- weights ----------------------------------------------------------------------------------------

    def weight_summaries(self) -> dict[str, dict[str, Summary]]:
        """Summaries of every layer's own variables, computed once per loaded model."""
        with self._lock:
            if self._weights is None:
                self._weights = {
                    path: {kind: summarize(value, per_unit=False) for kind, value in weight_values(layer).items()}
                    for path, layer in self.layers
                    if weight_values(layer)
                }
            return self._weights

    def weight_tensors(self, path: str) -> dict[str, np.ndarray]:
        layer = dict(self.layers)[path]
        return weight_values(layer)

    def _add_weights(self, result: CaptureResult, selection: Selection, summaries: bool = True) -> None:
        if not selection.kinds & {"kernel", "bias", "other"}:
            return
        for path, kinds in self.weight_summaries().items():
            layer = dict(self.layers)[path]
            class_name = type(layer).__name__
            cancellation.check()  # between layers: work for a call that has ended stops here
            if not selection.selects(path, class_name):
                continue
            chosen = {k: s for k, s in kinds.items() if selection.wants_variable(k)}
            if not chosen:
                continue
            if summaries:
                result.classes.setdefault(path, class_name)
                result.summaries.setdefault(path, {}).update(chosen)
            if selection.wants_full(path, class_name):
                result.classes.setdefault(path, class_name)
                values = self.weight_tensors(path)
                result.tensors.setdefault(path, {}).update({k: values[k] for k in chosen})


def _release_idle_probe(engine: weakref.ref[CaptureEngine]) -> None:
    live = engine()
    if live is not None:
        live.release_idle_probe()


def _remember(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, limit: int) -> None:
    cache[key] = value
    while len(cache) > limit:
        cache.popitem(last=False)


def _kinds_of(record: Recorded, wanted: set[str] | frozenset[str]) -> list[str]:
    """`activation.1` is an activation; `forward_lstm/kernel_gradient` a kernel_gradient (of a wrapper's weight)."""
    return [k for k in record.tensors if k.split(".")[0] in wanted or _gradient_role(k) in wanted]


def _gradient_role(kind: str) -> str:
    name = kind.rsplit("/", 1)[-1]
    if not name.endswith("_gradient"):
        return ""
    return f"{variable_role(name.removesuffix('_gradient'))}_gradient"


def _gradient_variables(
    chosen: list[tuple[str, keras.Layer]], selection: Selection
) -> dict[str, tuple[str, dict[str, Any]]]:
    """path -> (class name, gradient kind (`kernel_gradient`, `forward_lstm/bias_gradient`) -> trainable variable)."""
    roles = {kind.removesuffix("_gradient") for kind in selection.gradients - {"gradient"}}
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, layer in chosen:
        for name, variable in named_weights(layer).items():
            if variable.trainable and variable_role(name) in roles:
                found.setdefault(path, (type(layer).__name__, {}))[1][f"{name}_gradient"] = variable
    return found


def _add_gradients(
    tape: tf.GradientTape, loss: tf.Tensor, records: list[Recorded], variables: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    """Add each recorded output's gradient (kind `gradient`, `gradient.1`, ...) to its record and each
    variable's gradient to a record of its own layer, all from one backward pass. A tensor the loss does not
    depend on gets zeros: its gradient is zero, not missing."""
    outputs = [(r, k) for r in records for k in list(r.tensors) if k.split(".")[0] == "activation"]
    flat_variables = [(path, cls, kind, v) for path, (cls, kinds) in variables.items() for kind, v in kinds.items()]
    sources = [r.tensors[k] for r, k in outputs] + [v for *_, v in flat_variables]
    grads = tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for (record, kind), grad in zip(outputs, grads[: len(outputs)], strict=True):
        record.tensors[kind.replace("activation", "gradient", 1)] = grad
    by_path = {r.point: r for r in records}
    for (path, class_name, kind, _), grad in zip(flat_variables, grads[len(outputs) :], strict=True):
        if path not in by_path:  # a layer whose outputs were not recorded still has variables to report
            by_path[path] = Recorded(path, path, class_name)
            records.append(by_path[path])
        by_path[path].tensors[kind] = tf.convert_to_tensor(grad)


def _input_specs(model: keras.Model) -> tuple[InputSpec, ...]:
    try:
        tensors = model.inputs
    except (AttributeError, ValueError):
        tensors = None
    if not tensors:
        return _built_input_specs(model)
    return tuple(
        InputSpec(name=t.name, shape=tuple(t.shape), dtype=str(keras.backend.standardize_dtype(t.dtype)))
        for t in tensors
    )


def _built_input_specs(model: keras.Model) -> tuple[InputSpec, ...]:
    """A subclassed model has no symbolic inputs; its build config still records the input shape."""
    shape = (model.get_build_config() or {}).get("input_shape")
    if not shape or not isinstance(shape, list | tuple) or isinstance(shape[0], list | tuple | dict):
        raise InvalidInput(
            "Expected a model with known inputs (Sequential, Functional, or a subclassed model built on one "
            f"input); received '{model.name}' ({type(model).__name__}) without them."
        )
    dtype = str(keras.backend.standardize_dtype(getattr(model, "input_dtype", None) or "float32"))
    return (InputSpec(name="input", shape=(None, *shape[1:]), dtype=dtype),)


def _output_names(model: keras.Model) -> list[str]:
    names = getattr(model, "output_names", None)
    if names is None and isinstance(model, keras.Sequential) and model.layers:
        names = [model.layers[-1].name]  # Sequential has no output_names: its output is its last layer's
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if outputs:
        count = len(tf.nest.flatten(outputs))
    else:  # subclassed: one call on a single example tells the output structure
        spec = _input_specs(model)[0]
        probe = np.zeros((1, *(d or 1 for d in spec.shape[1:])), spec.dtype)
        count = len(tf.nest.flatten(model(probe, training=False)))
    if names and len(names) == count:
        return list(names)
    return [f"output_{i}" for i in range(count)]


def _output_specs(model: keras.Model, names: list[str]) -> tuple[InputSpec, ...]:
    try:
        tensors = tf.nest.flatten(model.outputs)
    except (AttributeError, ValueError):  # subclassed: known once called
        tensors = []
    if len(tensors) != len(names):  # one call on a single example tells the shapes (the batch left free)
        spec = _input_specs(model)[0]
        probe = np.zeros((1, *(d or 1 for d in spec.shape[1:])), spec.dtype)
        tensors = tf.nest.flatten(model(probe, training=False))
        if len(tensors) != len(names):
            return tuple(InputSpec(name, (None,), "float32") for name in names)
        return tuple(
            InputSpec(name, (None, *t.shape[1:]), str(keras.backend.standardize_dtype(t.dtype)))
            for name, t in zip(names, tensors, strict=True)
        )
    return tuple(
        InputSpec(name, tuple(t.shape), str(keras.backend.standardize_dtype(t.dtype)))
        for name, t in zip(names, tensors, strict=True)
    )


def _has_symbolic_outputs(model: keras.Model, names: list[str]) -> bool:
    try:
        return len(tf.nest.flatten(model.outputs)) == len(names)
    except (AttributeError, ValueError):
        return False


def _model_args(model: keras.Model, xs: list[tf.Tensor]) -> Any:
    """The inputs in the structure the model was built with: one tensor, a list, or a dict."""
    if isinstance(model, keras.Sequential) or len(xs) == 1:
        return xs[0]
    return tf.nest.pack_sequence_as(model.input, xs)


def _call(function: Any, *groups: list[np.ndarray]) -> Any:
    """A concrete function traced with `[_specs(g) for g in groups]`, called on those arrays.

    Its own call binds the arguments to its signature again every time (0.13 ms of the small CNN's 1.37 ms
    Predict on the CPU); the arrays already match it, since the function was traced for their signature, so
    they go in flat, as tensors. A TensorFlow without `_call_flat` (a private method) takes the public call.
    """
    call_flat = getattr(function, "_call_flat", None)
    if call_flat is None:
        return function(*groups)
    return call_flat([tf.convert_to_tensor(a) for group in groups for a in group], function.captured_inputs)


def _specs(arrays: list[np.ndarray]) -> list[tf.TensorSpec]:
    return [tf.TensorSpec((None, *a.shape[1:]), a.dtype) for a in arrays]


def _signature_key(arrays: list[np.ndarray]) -> tuple[Any, ...]:
    return tuple((a.shape[1:], a.dtype.str) for a in arrays)


def _conform(spec: InputSpec, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    expected = np.dtype(spec.dtype)
    if not _compatible(array.dtype, expected):
        raise InvalidInput(
            f"Input '{spec.name}' expects dtype {expected.name}; received {array.dtype.name}. "
            f"Convert it first, e.g. x.astype('{expected.name}') (after scaling, for raw pixels)."
        )
    fixed = spec.shape[1:]
    received = array.shape
    mismatch = len(received) != len(spec.shape) or any(
        e is not None and e != r for e, r in zip(fixed, received[1:], strict=True)
    )
    if mismatch:
        raise InvalidInput(f"Input '{spec.name}' expects shape {_shape(spec.shape)}; received {received}.")
    if received[0] == 0:
        raise InvalidInput(f"Input '{spec.name}' expects a batch of at least 1; received an empty batch.")
    return np.ascontiguousarray(array, dtype=expected)


def _compatible(received: np.dtype[Any], expected: np.dtype[Any]) -> bool:
    """Floats for float inputs, integers for integer inputs: no silent change of meaning."""
    same_family = received.kind == expected.kind or (received.kind in "iu" and expected.kind in "iu")
    return same_family and bool(np.can_cast(received, expected, casting="same_kind"))


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _selected(selection: Selection, path: str, layer: keras.Layer) -> bool:
    cancellation.check()  # between layers: work for a call that has ended stops here
    return selection.selects(path, type(layer).__name__)


def _check_statistics(statistics: str) -> None:
    if statistics not in STATISTICS_LEVELS:
        raise InvalidInput(f"Expected statistics among {list(STATISTICS_LEVELS)}; received {statistics!r}.")
