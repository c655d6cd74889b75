"""Hooks: wrap `layer.call` while the capture function is traced, and restore it afterwards.

Keras routes every layer call (Sequential, Functional, nested, subclassed) through `Operation.__call__`,
which calls `self.call`; an instance attribute shadows the class method, so wrapping needs no private API
and no graph surgery. The wrappers exist only during tracing: the compiled graph keeps the tensors they
recorded, and later calls of the compiled function run no Python at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf


def walk_layers(model: keras.Layer, prefix: str = "") -> Iterator[tuple[str, keras.Layer]]:
    """(path, layer) for every layer, depth first; nested models appear before their own layers.

    Paths follow the project convention: `name` at the top level, `sub/name` inside a nested model.
    """
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer, f"{path}/")


@dataclass
class Recorded:
    """What one call of one layer produced during tracing."""

    point: str
    """`path` for the first call, `path:1`, `path:2` ... for later calls of a shared layer."""
    path: str
    class_name: str
    tensors: dict[str, tf.Tensor] = field(default_factory=dict)
    """kind (activation, activation.1 ..., input, input.1 ...) -> tensor."""


def _tensors(value: Any) -> list[tf.Tensor]:
    return [t for t in tf.nest.flatten(value) if isinstance(t, tf.Tensor | tf.Variable)]


def _named(kind: str, tensors: list[tf.Tensor]) -> dict[str, tf.Tensor]:
    return {(kind if i == 0 else f"{kind}.{i}"): t for i, t in enumerate(tensors)}


@contextmanager
def recording(layers: list[tuple[str, keras.Layer]], take_inputs: bool) -> Iterator[list[Recorded]]:
    """Wrap the given layers' `call` for the duration of the block; yields the calls in execution order."""
    records: list[Recorded] = []
    calls: dict[str, int] = {}
    wrapped: list[keras.Layer] = []

    def hook(path: str, layer: keras.Layer, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            outputs = original(*args, **kwargs)
            n = calls.get(path, 0)
            calls[path] = n + 1
            record = Recorded(path if n == 0 else f"{path}:{n}", path, type(layer).__name__)
            record.tensors.update(_named("activation", _tensors(outputs)))
            if take_inputs and args:
                record.tensors.update(_named("input", _tensors(args[0])))
            records.append(record)
            return outputs

        return call

    try:
        for path, layer in layers:
            if "call" in vars(layer):  # already wrapped (a layer reachable by two paths): keep the first
                continue
            object.__setattr__(layer, "call", hook(path, layer, layer.call))
            wrapped.append(layer)
        yield records
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
