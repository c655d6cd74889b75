"""Training as data: which losses a caller may name, the loss a compile config holds, and the probe's steps.

The service never deserialises a caller's (or a model file's) loss or optimizer object: both are read as
plain names and numbers and checked against the Keras identifiers listed here. capture/ maps the names to
Keras classes; the diagnosis rules read them to know, say, that sparse labels are class indices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerscope.service.domain.summary import Summary, summarize
from layerscope.service.errors import InvalidInput

LOSSES = frozenset(
    {
        "binary_crossentropy",
        "binary_focal_crossentropy",
        "categorical_crossentropy",
        "categorical_focal_crossentropy",
        "sparse_categorical_crossentropy",
        "categorical_hinge",
        "hinge",
        "squared_hinge",
        "kl_divergence",
        "poisson",
        "cosine_similarity",
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "huber",
        "log_cosh",
    }
)
"""The Keras loss identifiers a request may name (aliases such as `mse` are accepted too)."""
LOSS_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error",
    "bce": "binary_crossentropy",
    "huber_loss": "huber",
    "logcosh": "log_cosh",
    "kld": "kl_divergence",
    "kullback_leibler_divergence": "kl_divergence",
}
REGRESSION_LOSSES = frozenset(
    {
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "huber",
        "log_cosh",
    }
)
INDEX_TARGET_LOSSES = frozenset({"sparse_categorical_crossentropy"})
"""Losses whose targets are class indices, not values the output should reach."""
ONE_HOT_TARGET_LOSSES = frozenset({"categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge"})
"""Losses whose targets are rows as wide as the output (one-hot, or a distribution), never class indices."""
OPTIMIZERS = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
}
"""Optimizer identifiers a request or compile config may name (lower case) -> Keras class name."""
DEFAULT_OPTIMIZER = ("adam", 1e-3)
"""What a probe uses when neither the request nor the compile config names an optimizer."""


@dataclass(frozen=True)
class LossSpec:
    """One output's loss as data: a canonical Keras identifier and whether it takes logits."""

    name: str
    from_logits: bool = False


def canonical_loss(name: str) -> str:
    """`MeanSquaredError`, `mse`, `mean_squared_error` -> `mean_squared_error` (may not be in LOSSES)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("cross_entropy", "crossentropy")
    return LOSS_ALIASES.get(snake, snake)


def named_loss(name: str) -> LossSpec:
    """A caller's loss name, refused unless it is a Keras loss identifier."""
    canonical = canonical_loss(name.strip())
    if canonical not in LOSSES:
        raise InvalidInput(
            f"Expected a Keras loss identifier among {sorted(LOSSES)} (or an alias: {sorted(LOSS_ALIASES)}); "
            f"received {name!r}."
        )
    return LossSpec(canonical)


def compiled_losses(compile_config: Mapping[str, Any] | None, outputs: int) -> list[LossSpec] | None:
    """The compiled loss of every output, in output order; None when the config names none we accept."""
    value = (compile_config or {}).get("loss")
    if value is None:
        return None
    if isinstance(value, list):
        specs = [_one_loss(v) for v in value]
    elif isinstance(value, Mapping) and "class_name" not in value:
        specs = [_one_loss(v) for v in value.values()]  # Keras keeps a dict of losses in output order
    else:
        specs = [_one_loss(value)] * outputs
    if len(specs) != outputs or any(s is None for s in specs):
        return None
    return [s for s in specs if s is not None]


def _one_loss(value: Any) -> LossSpec | None:
    if isinstance(value, str):
        name = canonical_loss(value)
        return LossSpec(name) if name in LOSSES else None
    if isinstance(value, Mapping):
        config = value.get("config")
        class_name = value.get("class_name")
        if class_name == "function" and isinstance(config, str):
            return _one_loss(config)
        if isinstance(class_name, str) and canonical_loss(class_name) in LOSSES:
            logits = bool(config.get("from_logits", False)) if isinstance(config, Mapping) else False
            return LossSpec(canonical_loss(class_name), logits)
    return None


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer as data: its identifier (a key of OPTIMIZERS), learning rate and plain numeric options."""

    name: str
    learning_rate: float
    options: tuple[tuple[str, float | bool], ...] = ()

    def describe(self) -> str:
        return f"{OPTIMIZERS[self.name]}(learning_rate={self.learning_rate:g})"


def named_optimizer(name: str, learning_rate: float | None) -> OptimizerSpec:
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise InvalidInput(f"Expected an optimizer among {sorted(OPTIMIZERS)}; received {name!r}.")
    return OptimizerSpec(key, _learning_rate(learning_rate, 1e-3 if key != "sgd" else 1e-2))


def _learning_rate(value: float | None, default: float) -> float:
    if value is None:
        return default
    if not (0.0 < value < 1e3):  # NaN fails this too
        raise InvalidInput(f"Expected a learning rate in (0, 1000); received {value!r}.")
    return float(value)


OPTIMIZER_OPTIONS = frozenset(
    {"momentum", "nesterov", "beta_1", "beta_2", "epsilon", "rho", "weight_decay", "clipnorm", "clipvalue"}
)
"""Compile-config options a probe keeps: plain numbers that change an update; anything else is dropped."""


def probe_optimizer(
    compile_config: Mapping[str, Any] | None, name: str | None, learning_rate: float | None
) -> OptimizerSpec:
    """The optimizer a probe runs: the request's, else the compiled one, else DEFAULT_OPTIMIZER; a
    learning rate in the request overrides the compiled one."""
    if name:
        return named_optimizer(name, learning_rate)
    compiled = (compile_config or {}).get("optimizer")
    if isinstance(compiled, str) and compiled.lower() in OPTIMIZERS:
        return named_optimizer(compiled, learning_rate)
    if isinstance(compiled, Mapping) and str(compiled.get("class_name", "")).lower() in OPTIMIZERS:
        config = compiled.get("config")
        config = config if isinstance(config, Mapping) else {}
        rate = config.get("learning_rate")
        spec = named_optimizer(str(compiled["class_name"]), learning_rate)
        if learning_rate is None and isinstance(rate, int | float) and not isinstance(rate, bool) and 0 < rate < 1e3:
            spec = OptimizerSpec(spec.name, float(rate))  # a schedule (a dict) keeps the class default
        options = tuple(
            sorted((k, v) for k, v in config.items() if k in OPTIMIZER_OPTIONS and isinstance(v, int | float))
        )
        return OptimizerSpec(spec.name, spec.learning_rate, options)
    return named_optimizer(DEFAULT_OPTIMIZER[0], learning_rate or DEFAULT_OPTIMIZER[1])


@dataclass(frozen=True)
class ProbeStep:
    """One step of a training probe, measured on a copy of the weights.

    Steps 0..N-1 are measured before their update is applied (`update_ratios` then holds that update's
    ||delta w|| / ||w|| per layer); the last entry, step N, is the state after the N updates, with no update.
    """

    step: int
    loss: float
    gradient_norms: Mapping[str, float] = field(default_factory=dict)
    """layer -> L2 norm of the gradient of the loss over the layer's trainable variables."""
    update_ratios: Mapping[str, float] = field(default_factory=dict)
    dead_fractions: Mapping[str, float] = field(default_factory=dict)
    """ReLU-family layer -> fraction of its units never > 0 over the batch."""
    saturated_fractions: Mapping[str, float] = field(default_factory=dict)
    """sigmoid/tanh layer -> fraction of its outputs within 1% of a bound."""


@dataclass(frozen=True)
class ProbeResult:
    steps: tuple[ProbeStep, ...]
    optimizer: str
    """What ran, e.g. `Adam(learning_rate=0.001)`."""
    loss: str
    """The loss identifier(s), comma-separated per output."""
    learning_layers: tuple[str, ...] = ()
    """Layers with trainable variables, in graph order (first to last)."""


@dataclass(frozen=True)
class TrainingOptions:
    """What a caller asks of the training side of a capture or diagnosis: targets, loss, probe settings."""

    targets: Mapping[str, Any] | None = None
    """output name -> array of targets, as the inputs are given."""
    loss: str | None = None
    probe_steps: int | None = None
    """None: the server's default (when targets are given); 0: no probe."""
    optimizer: str | None = None
    learning_rate: float | None = None


@dataclass(frozen=True)
class TargetInfo:
    """What the rules see of one output's targets: their statistics and shape (never the values), and the
    shape of the output they are scored against."""

    summary: Summary
    shape: tuple[int, ...]
    integral: bool = False
    """Every finite target is a whole number (class ids can be)."""
    output_shape: tuple[int | None, ...] | None = None

    def mismatch(self, loss: LossSpec) -> tuple[str, str] | None:
        """(expected, received) when the loss cannot score these targets against the output; None when it can."""
        if self.output_shape is None:
            return None
        s = self.summary
        finite = s.count > s.non_finite
        low, high = (s.min, s.max) if finite else (0.0, 0.0)
        return target_mismatch(self.output_shape, loss, self.shape, low, high, self.integral)


def target_info(y: np.ndarray, output_shape: tuple[int | None, ...]) -> TargetInfo:
    """What the rules see of one output's targets. An output shape of (None,) is what an engine reports for a
    model whose outputs it cannot see before running it (subclassed): unknown, so never judged."""
    integral, _, _ = target_facts(y)
    known = None if tuple(output_shape) == (None,) else tuple(output_shape)
    return TargetInfo(summarize(y, per_unit=False), tuple(y.shape), integral, known)


def target_facts(y: Any) -> tuple[bool, float, float]:
    """(whole numbers?, min, max) of a target array's finite values."""
    values = np.asarray(y)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.reshape(-1)
    if finite.size == 0:
        return False, 0.0, 0.0
    integral = values.dtype.kind in "iub" or bool(np.all(np.floor(finite) == finite))
    return integral, float(finite.min()), float(finite.max())


def target_mismatch(
    output: tuple[int | None, ...], loss: LossSpec, target: tuple[int, ...], low: float, high: float, integral: bool
) -> tuple[str, str] | None:
    """(expected, received) when targets of this shape and range cannot be scored by `loss` against an output of
    shape `output` (batch first); None when they can. Keras would fail inside the traced loss (a shape error),
    or worse broadcast a (batch, 1) target across every unit: both are refused here, before anything runs.

    Class-id losses (sparse categorical cross-entropy) take one integer id in [0, classes) per output row:
    shape (batch, ...) or (batch, ..., 1). Every other loss takes the output's own shape ((batch,) for a
    (batch, 1) output too, as Keras squeezes it)."""
    per_row, got = tuple(output[1:]), tuple(target[1:])
    batch = target[0] if target else 0
    kind = "integers" if integral else "values"
    received = f"{kind} of shape {_shape(target)} in [{low:g}, {high:g}]"
    if loss.name in INDEX_TARGET_LOSSES:
        classes = per_row[-1] if per_row else None
        ids = per_row[:-1]
        if not (_fits(ids, got) or _fits((*ids, 1), got)):
            hint = " (one-hot rows: use categorical_crossentropy, or send y.argmax(-1))" if _fits(per_row, got) else ""
            return f"one class id per row, shape {_shape((batch, *ids))}, for {loss.name}", received + hint
        if not integral or low < 0 or (classes is not None and high >= classes):
            return f"integer class ids in [0, {classes}) for {loss.name} over {classes} classes", received
        return None
    if _fits(per_row, got) or (per_row[-1:] == (1,) and _fits(per_row[:-1], got)) or _fits((*per_row, 1), got):
        return None  # Keras squeezes or expands a trailing 1 to the output's rank
    hint = ""
    if "categorical" in loss.name and integral and (_fits(per_row[:-1], got) or _fits((*per_row[:-1], 1), got)):
        hint = " (class ids: use sparse_categorical_crossentropy, or one-hot encode them)"
    return f"targets of the output's shape {_shape((batch, *per_row))} for {loss.name}", received + hint


def _fits(expected: tuple[int | None, ...], received: tuple[int, ...]) -> bool:
    return len(expected) == len(received) and all(e is None or e == r for e, r in zip(expected, received, strict=True))


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def probe_to_data(probe: ProbeResult) -> dict[str, Any]:
    """Plain JSON-able data (NaN stays a float: callers write it with allow_nan) for the store and spool."""
    return {
        "optimizer": probe.optimizer,
        "loss": probe.loss,
        "learning_layers": list(probe.learning_layers),
        "steps": [
            {
                "step": s.step,
                "loss": s.loss,
                "gradient_norms": dict(s.gradient_norms),
                "update_ratios": dict(s.update_ratios),
                "dead_fractions": dict(s.dead_fractions),
                "saturated_fractions": dict(s.saturated_fractions),
            }
            for s in probe.steps
        ],
    }


def probe_from_data(data: Mapping[str, Any]) -> ProbeResult:
    """The inverse of `probe_to_data`, with every value's type restored (data without `learning_layers`:
    none)."""
    return ProbeResult(
        steps=tuple(
            ProbeStep(
                step=int(s["step"]),
                loss=float(s["loss"]),
                gradient_norms={str(k): float(v) for k, v in s["gradient_norms"].items()},
                update_ratios={str(k): float(v) for k, v in s["update_ratios"].items()},
                dead_fractions={str(k): float(v) for k, v in s["dead_fractions"].items()},
                saturated_fractions={str(k): float(v) for k, v in s["saturated_fractions"].items()},
            )
            for s in data["steps"]
        ),
        optimizer=str(data["optimizer"]),
        loss=str(data["loss"]),
        learning_layers=tuple(str(x) for x in data.get("learning_layers", ())),
    )
