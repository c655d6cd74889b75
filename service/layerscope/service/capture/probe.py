"""The training probe: a few optimizer steps on a clone of a model, never on the model being served.

Each step runs in one compiled function: the forward pass in training mode (hooks record the outputs of
ReLU-family and sigmoid/tanh layers), the loss, its gradients, the per-layer measurements and the update.
Only a few numbers per layer leave the device. Each probe starts from the served weights and a fresh
optimizer state, so a probe cannot leak state into the next one or into the served weights.

What a kept runner costs (`probe_cost`): a clone of every weight, the optimizer's slots (Adam: two per
trainable weight) and the compiled step; the optimizer's starting state is kept as one value per slot where
it is uniform (zeros, Adagrad's 0.1), so with Adam a kept probe holds about 3x the weights' bytes, plus the
traced step. The engine bounds it before building one and lets it go after an idle period.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.optimizers.base_optimizer import BaseOptimizer

from layerscope.service.capture.hooks import recording, walk_layers
from layerscope.service.capture.losses import build_loss
from layerscope.service.domain.training import OPTIMIZERS, LossSpec, OptimizerSpec, ProbeResult, ProbeStep
from layerscope.service.errors import InvalidInput

RELU_FAMILY = frozenset({"relu", "relu6"})
SATURATING = frozenset({"sigmoid", "tanh", "hard_sigmoid", "hard_tanh"})
SATURATION_MARGIN = 0.01
"""An output within 1% of the activation's range from a bound counts as saturated."""


@dataclass(frozen=True)
class _Plan:
    learning: list[tuple[str, list[int]]]
    """(layer path, indices into the clone's trainable variables), graph order."""
    relu: list[tuple[str, keras.Layer]]
    saturating: list[tuple[str, keras.Layer, str]]


class ProbeRunner:
    """A clone of one model with its optimizer and compiled step, reused across probes of one (loss,
    optimizer): each run first copies the served weights into the clone and restores the optimizer's
    freshly built state, so every probe starts where a new one would, without cloning and tracing again
    (most of a probe's cost for a small model). Not thread-safe: the engine runs one probe at a time.

    Everything a probe draws is seeded from its request: the random layers' seed generators (dropout,
    noise, augmentation: the clone's `seed_generator_state` variables) restart from a seed made of the
    inputs and targets, so the same request gives the same steps and findings, in this process or another
    (a probe has one batch: nothing is shuffled)."""

    def __init__(
        self,
        model: keras.Model,
        losses: Sequence[LossSpec],
        optimizer: OptimizerSpec,
        device: str,
        model_args: Callable[[keras.Model, list[tf.Tensor]], Any],
    ) -> None:
        self._model = model
        self._clone = _clone(model)
        self._plan = _plan(self._clone)
        self._losses = tuple(losses)
        self._optimizer = optimizer
        self._device = device
        trainable = list(self._clone.trainable_variables)
        self._opt = _optimizer(optimizer)
        with tf.device(device):
            self._opt.build(trainable)
        self._fresh = [_Fresh.of(v) for v in self._opt.variables]
        self._seeds = [v for v in self._clone.variables if v.name == "seed_generator_state"]
        self._step = _step_function(self._clone, self._plan, build_loss(losses), trainable, self._opt, model_args)

    def run(self, xs: list[np.ndarray], ys: list[np.ndarray], steps: int) -> ProbeResult:
        """`steps` updates on one batch; returns steps 0..N (N: after the last update)."""
        self._clone.set_weights(self._model.get_weights())  # the served model is only read
        for variable, fresh in zip(self._opt.variables, self._fresh, strict=True):
            variable.assign(fresh.value())
        states = np.random.SeedSequence(request_seed(xs, ys)).generate_state(len(self._seeds))
        for variable, state in zip(self._seeds, states, strict=True):
            variable.assign(np.array([state, 0], dtype=variable.dtype))
        with tf.device(self._device):
            records = [_record(step, self._plan, self._step(xs, ys)) for step in range(steps + 1)]
        # Step N measures the state after N updates; the update it also made touched only the clone (reset
        # by the next run), and one traced function instead of two (measure, train) halves the tracing.
        records[-1] = dataclasses.replace(records[-1], update_ratios={})
        return ProbeResult(
            steps=tuple(records),
            optimizer=self._optimizer.describe(),
            loss=", ".join(s.name + (" (from_logits)" if s.from_logits else "") for s in self._losses),
            learning_layers=tuple(path for path, _ in self._plan.learning),
        )


@dataclass(frozen=True)
class ProbeCost:
    """What a kept probe runner holds, in bytes, before it is built."""

    clone: int
    """A copy of every weight of the model."""
    slots: int
    """The optimizer's slot variables: `per_weight` of each trainable weight."""
    per_weight: int

    @property
    def total(self) -> int:
        return self.clone + self.slots


def probe_cost(model: keras.Model, optimizer: OptimizerSpec) -> ProbeCost:
    """The bytes a probe runner of `model` with `optimizer` keeps, counted before it is built."""
    per_weight = _slots_per_weight(optimizer)
    trainable = sum(_nbytes(v) for v in model.trainable_weights)
    return ProbeCost(sum(_nbytes(v) for v in model.weights), per_weight * trainable, per_weight)


def _nbytes(variable: Any) -> int:
    itemsize = int(np.dtype(keras.backend.standardize_dtype(variable.dtype)).itemsize)
    return int(np.prod(variable.shape, dtype=np.int64)) * itemsize


@functools.lru_cache(maxsize=64)
def _slots_per_weight(spec: OptimizerSpec) -> int:
    """How many variables of a weight's shape the optimizer keeps per trainable weight, found by building it on
    one small weight: so momentum, amsgrad or a centered RMSprop are counted as configured."""
    optimizer = _optimizer(spec)
    probe = keras.Variable(np.zeros((3, 5), "float32"), name="probe")
    optimizer.build([probe])
    return sum(1 for v in optimizer.variables if tuple(v.shape) == (3, 5))


@dataclass(frozen=True)
class _Fresh:
    """An optimizer variable's starting value: one number when it is uniform (every slot of the optimizers a
    probe takes starts so), the whole array otherwise."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fill: Any
    array: np.ndarray | None = None

    @classmethod
    def of(cls, variable: Any) -> _Fresh:
        value = np.asarray(variable.numpy())
        flat = value.reshape(-1)
        if flat.size == 0 or bool((flat == flat[0]).all()):
            return cls(value.shape, value.dtype, flat[0].item() if flat.size else 0)
        return cls(value.shape, value.dtype, None, np.array(value, copy=True))

    def value(self) -> np.ndarray:
        return self.array if self.array is not None else np.full(self.shape, self.fill, self.dtype)


def request_seed(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> int:
    """A seed made of the arrays' shapes, types and bytes (CRC-32: about a millisecond per MB)."""
    seed = 0
    for array in (*xs, *ys):
        contiguous = np.ascontiguousarray(array)
        seed = zlib.crc32(f"{contiguous.dtype.str}{contiguous.shape}".encode(), seed)
        seed = zlib.crc32(contiguous.reshape(-1).view(np.uint8).data, seed)
    return seed


def _clone(model: keras.Model) -> keras.Model:
    """A copy with its own variables holding the served values; the served model is only read."""
    try:
        clone = keras.models.clone_model(model)
    except Exception as exc:  # Keras raises several types for models it cannot rebuild from their config
        raise InvalidInput(
            f"Expected a model Keras can clone for the training probe (Sequential or Functional); received "
            f"'{model.name}' ({type(model).__name__}): {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    clone.set_weights(model.get_weights())
    return clone


def _plan(clone: keras.Model) -> _Plan:
    index = {id(v): i for i, v in enumerate(clone.trainable_variables)}
    learning, relu, saturating = [], [], []
    for path, layer in walk_layers(clone):
        if isinstance(layer, keras.Model):
            continue
        owned = [index[id(v)] for v in layer.trainable_weights if id(v) in index]
        if owned:
            learning.append((path, owned))
        activation = _activation(layer)
        if activation in RELU_FAMILY:
            relu.append((path, layer))
        elif activation in SATURATING:
            saturating.append((path, layer, activation))
    return _Plan(learning, relu, saturating)


def _activation(layer: keras.Layer) -> str | None:
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    value = layer.get_config().get("activation")
    return value if isinstance(value, str) else None


def _optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    cls = getattr(keras.optimizers, OPTIMIZERS[spec.name])
    try:
        optimizer: keras.optimizers.Optimizer = cls(learning_rate=spec.learning_rate, **dict(spec.options))
    except (TypeError, ValueError):  # an option this class does not take: the learning rate is what matters
        optimizer = cls(learning_rate=spec.learning_rate)
    return _without_distribution(optimizer)


def _without_distribution(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer's updates as Keras's backend-neutral loop, not through tf.distribute.

    Keras's TensorFlow optimizer routes each update through `tf.distribute` (`maybe_merge_call`, then
    `extended.update` per variable). Traced in a `tf.function`, that keeps every variable it updates alive
    after the function, the clone and the optimizer are gone: each probe runner built and dropped leaked a
    clone and its slots (about 4x the weights with Adam; tests/security/test_probe_memory.py). A probe runs
    on one device, where the distributed update is this same loop."""
    optimizer._backend_update_step = types.MethodType(BaseOptimizer._backend_update_step, optimizer)
    optimizer._apply_weight_decay = types.MethodType(BaseOptimizer._apply_weight_decay, optimizer)
    return optimizer


def _step_function(
    clone: keras.Model,
    plan: _Plan,
    loss_fn: Callable[[list[tf.Tensor], list[tf.Tensor]], tf.Tensor],
    trainable: list[Any],
    optimizer: keras.optimizers.Optimizer,
    model_args: Callable[[keras.Model, list[tf.Tensor]], Any],
) -> Callable[[list[np.ndarray], list[np.ndarray]], dict[str, Any]]:
    watched = [(p, layer) for p, layer in plan.relu] + [(p, layer) for p, layer, _ in plan.saturating]

    def step(xs: list[tf.Tensor], ys: list[tf.Tensor]) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            with recording(watched, take_inputs=False) as records:
                outputs = tf.nest.flatten(clone(model_args(clone, xs), training=True))
            loss = loss_fn(ys, outputs)
            if clone.losses:  # regularisers are part of what the optimizer minimises
                loss = loss + tf.add_n([tf.cast(x, loss.dtype) for x in clone.losses])
        grads = tape.gradient(loss, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        norms = tf.stack([_norm([grads[i] for i in owned]) for _, owned in plan.learning] or [tf.zeros([])])
        outputs_by_path = {r.point: r.tensors["activation"] for r in records if "activation" in r.tensors}
        dead = [_dead(outputs_by_path[p]) for p, _ in plan.relu if p in outputs_by_path]
        saturated = [_saturated(outputs_by_path[p], act) for p, _, act in plan.saturating if p in outputs_by_path]
        result: dict[str, Any] = {
            "loss": loss,
            "norms": norms,
            "dead": tf.stack(dead) if dead else tf.zeros([0]),
            "saturated": tf.stack(saturated) if saturated else tf.zeros([0]),
        }
        before = [tf.identity(v) for v in trainable]
        optimizer.apply(grads, trainable)
        ratios = [
            _norm([trainable[i] - before[i] for i in owned]) / tf.maximum(_norm([before[i] for i in owned]), 1e-12)
            for _, owned in plan.learning
        ]
        result["ratios"] = tf.stack(ratios) if ratios else tf.zeros([0])
        return result

    # reduce_retracing: a caller varying the batch size gets one shape-polymorphic trace, not one per size.
    return tf.function(step, autograph=False, reduce_retracing=True)  # type: ignore[no-any-return]


def _norm(tensors: list[Any]) -> tf.Tensor:
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(t, tf.float32))) for t in tensors]))


def _dead(output: tf.Tensor) -> tf.Tensor:
    """The fraction of units (last axis) never > 0 at any position of the batch."""
    units = tf.reshape(tf.cast(output, tf.float32), [-1, tf.shape(output)[-1]])
    alive = tf.reduce_any(units > 0.0, axis=0)
    return 1.0 - tf.reduce_mean(tf.cast(alive, tf.float32))


def _saturated(output: tf.Tensor, activation: str) -> tf.Tensor:
    x = tf.cast(output, tf.float32)
    low, high = (0.0, 1.0) if "sigmoid" in activation else (-1.0, 1.0)
    margin = SATURATION_MARGIN * (high - low)
    return tf.reduce_mean(tf.cast((x <= low + margin) | (x >= high - margin), tf.float32))


def _record(step: int, plan: _Plan, values: dict[str, Any]) -> ProbeStep:
    norms = np.asarray(values["norms"], np.float64)
    ratios = np.asarray(values["ratios"], np.float64) if "ratios" in values else None
    relu = [p for p, _ in plan.relu]
    saturating = [p for p, _, _ in plan.saturating]
    return ProbeStep(
        step=step,
        loss=float(np.asarray(values["loss"])),
        gradient_norms={p: float(n) for (p, _), n in zip(plan.learning, norms, strict=False)},
        update_ratios={} if ratios is None else {p: float(r) for (p, _), r in zip(plan.learning, ratios, strict=True)},
        dead_fractions=dict(zip(relu, (float(x) for x in np.asarray(values["dead"])), strict=False)),
        saturated_fractions=dict(zip(saturating, (float(x) for x in np.asarray(values["saturated"])), strict=False)),
    )
