"""Probe inputs: what the runtime rules run on when the caller gives none.

A batch mixes several distributions (standard normal, uniform [0, 1], uniform [-1, 1]) so that a model
which ignores its input, or units that never fire for any of them, show up; the seed is fixed so that two
runs of the same model see the same numbers.

Those distributions are what a model's first layers should see. A model that brings its own preprocessing
(keras.applications' MobileNetV3 starts with Rescaling(1/127.5, offset=-1), ConvNeXt with a Normalization by
ImageNet's pixel mean and variance) reads raw values instead: probes in [-1, 1] would reach it as one nearly
constant grey image. So a leading chain of Rescaling and Normalization layers (with their constants in the
config) is undone: the probes are drawn where the model reads them, and reach its first real layer as drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from layerscope.service.diagnosis.graph import Graph
from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription

FREE_DIMENSION = 32
"""The size given to a free (None) non-batch dimension of an input."""

MAX_PROBE_INTEGER = 8
"""Integer inputs (token ids, category codes) get values in [0, MAX_PROBE_INTEGER)."""

Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

DISTRIBUTIONS: tuple[tuple[str, Draw], ...] = (
    ("standard normal", lambda rng, shape: rng.standard_normal(shape)),
    ("uniform [0, 1]", lambda rng, shape: rng.uniform(0.0, 1.0, shape)),
    ("uniform [-1, 1]", lambda rng, shape: rng.uniform(-1.0, 1.0, shape)),
)


@dataclass(frozen=True)
class Probe:
    description: str
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Preprocessing:
    """A model's own leading affine preprocessing of one input: it reads `raw` and passes on
    `raw * scale + offset` (per channel: the last axis) to its first real layer."""

    layers: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray

    def raw(self, values: np.ndarray) -> np.ndarray:
        """The raw input that this preprocessing turns into `values`."""
        raw: np.ndarray = (values - self.offset) / self.scale
        return raw


def preprocessing(description: ModelDescription) -> dict[str, Preprocessing]:
    """input name -> the chain of Rescaling/Normalization layers that alone reads it first, as one affine map."""
    graph = Graph(description)
    found = {}
    for spec in description.inputs:
        readers = [layer for layer in graph.layers if spec in graph.model_inputs_of(layer)]
        layer = readers[0] if len(readers) == 1 else None
        scale, offset, names = np.ones(()), np.zeros(()), []
        while layer is not None and (affine := _affine(layer)) is not None:
            scale, offset = scale * affine[0], offset * affine[0] + affine[1]
            names.append(layer.name)
            after = graph.successors(layer)
            layer = after[0] if len(after) == 1 else None
        channels = spec.shape[-1] if len(spec.shape) > 1 else None
        fits = all(a.ndim <= 1 and a.size in (1, channels) for a in (scale, offset))
        if names and fits:
            found[spec.name] = Preprocessing(tuple(names), scale, offset)
    return found


def _affine(layer: LayerInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) of a Rescaling or Normalization layer whose constants its config holds: it outputs a * x + b."""
    config = layer.config
    if layer.class_name == "Rescaling":
        a, b = _numbers(config.get("scale")), _numbers(config.get("offset", 0.0))
    elif layer.class_name == "Normalization" and not config.get("invert") and _last_axis(layer):
        mean, variance = _numbers(config.get("mean")), _numbers(config.get("variance"))
        if mean is None or variance is None:
            return None  # adapted from data: the constants are weights, not config
        std = np.sqrt(np.maximum(variance, 1e-7))  # Keras's epsilon
        a, b = 1.0 / std, -mean / std
    else:
        return None
    if a is None or b is None or not np.all(np.isfinite(a)) or np.any(a == 0):
        return None
    return a, b


def _numbers(value: object) -> np.ndarray | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return np.asarray(float(value))
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value, dtype=np.float64)
    return None


def _last_axis(layer: LayerInfo) -> bool:
    """Whether a Normalization normalises per channel of the last axis (the only one probes broadcast on)."""
    axis = layer.config.get("axis")
    axes = list(axis) if isinstance(axis, list | tuple) else [axis]
    rank = len(layer.input_shapes[0]) if layer.input_shapes else 0
    return len(axes) == 1 and axes[0] in (-1, rank - 1)


def probe_inputs(
    specs: Sequence[InputSpec], batch: int = 24, seed: int = 0, description: ModelDescription | None = None
) -> Probe:
    """Seeded inputs for every spec: float inputs mix the distributions row-wise, integers are small; with
    the model's `description`, float inputs are drawn where its own leading preprocessing reads them."""
    if batch < len(DISTRIBUTIONS):
        raise ValueError(f"Expected batch >= {len(DISTRIBUTIONS)} so every distribution appears; received {batch}.")
    rng = np.random.default_rng(seed)
    parts = np.array_split(np.arange(batch), len(DISTRIBUTIONS))
    undo = preprocessing(description) if description is not None else {}
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch, *(FREE_DIMENSION if d is None else d for d in spec.shape[1:]))
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "iu":
            arrays[spec.name] = rng.integers(0, MAX_PROBE_INTEGER, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            rows = [draw(rng, (len(p), *shape[1:])) for (_, draw), p in zip(DISTRIBUTIONS, parts, strict=True)]
            values = np.concatenate(rows)
            if spec.name in undo:
                values = undo[spec.name].raw(values)
            arrays[spec.name] = values.astype(dtype)
    sizes = ", ".join(f"{len(p)} {name}" for (name, _), p in zip(DISTRIBUTIONS, parts, strict=True))
    description_text = (
        f"{batch} rows per input ({sizes}; integer inputs uniform in [0, {MAX_PROBE_INTEGER})), seed {seed}"
    )
    for name, chain in undo.items():
        layers = ", ".join(f"'{layer}'" for layer in chain.layers)
        description_text += f"; '{name}' drawn in the raw range its preprocessing {layers} reads"
    return Probe(description_text, arrays)
