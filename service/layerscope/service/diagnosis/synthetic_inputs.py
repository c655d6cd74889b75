"""Probe inputs: what the runtime rules run on when the caller gives none.

A batch mixes several distributions (standard normal, uniform [0, 1], uniform [-1, 1]) so that a model
which ignores its input, or units that never fire for any of them, show up; the seed is fixed so that two
runs of the same model see the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from layerscope.service.domain.description import InputSpec

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


def probe_inputs(specs: Sequence[InputSpec], batch: int = 24, seed: int = 0) -> Probe:
    """Seeded inputs for every spec: float inputs mix the distributions row-wise, integers are small."""
    if batch < len(DISTRIBUTIONS):
        raise ValueError(f"Expected batch >= {len(DISTRIBUTIONS)} so every distribution appears; received {batch}.")
    rng = np.random.default_rng(seed)
    parts = np.array_split(np.arange(batch), len(DISTRIBUTIONS))
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
            arrays[spec.name] = np.concatenate(rows).astype(dtype)
    sizes = ", ".join(f"{len(p)} {name}" for (name, _), p in zip(DISTRIBUTIONS, parts, strict=True))
    description = f"{batch} rows per input ({sizes}; integer inputs uniform in [0, {MAX_PROBE_INTEGER})), seed {seed}"
    return Probe(description, arrays)
