"""A model as the diagnosis rules read it: its layer graph, weights and compile config, as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from layerscope.service.domain.jsonable import JsonValue
from layerscope.service.domain.summary import Summary

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class WeightInfo:
    """One variable of a layer: `kind` is kernel, bias, or the variable's own name (gamma, moving_mean...)."""

    kind: str
    shape: Shape
    summary: Summary
    identical_units: bool = False
    """True when every output unit (last axis) holds the same weights: symmetry that training never breaks."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer of the flattened layer graph.

    `name` is the layer's real name, prefixed with its enclosing sub-models (`block/conv`) when nested;
    `inbound` names the layers whose outputs feed it, across sub-model boundaries.
    """

    name: str
    class_name: str
    config: Mapping[str, JsonValue]
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    inbound: tuple[str, ...]
    parameters: int
    weights: tuple[WeightInfo, ...] = ()
    parent: str | None = None

    @property
    def activation(self) -> str | None:
        """The activation this layer applies: its `activation` config, or the ReLU/Softmax layer itself."""
        simple = {
            "ReLU": "relu",
            "Softmax": "softmax",
            "LeakyReLU": "leaky_relu",
            "ELU": "elu",
            "PReLU": "prelu",
        }
        if self.class_name in simple:
            return simple[self.class_name]
        value = self.config.get("activation")
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping):  # serialized activation object
            inner = value.get("config", {})
            name = value.get("class_name") if not isinstance(inner, Mapping) else inner.get("name")
            return str(name) if name else None
        return None


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: Shape
    dtype: str


@dataclass(frozen=True)
class ModelDescription:
    """What the diagnosis rules see of a model: its layer graph and compile config, as data."""

    name: str
    layers: tuple[LayerInfo, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    """Names of the layers that produce the model's outputs."""
    parameters: int
    compile_config: Mapping[str, JsonValue] | None = None

    def layer(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def successors(self, name: str) -> list[LayerInfo]:
        return [layer for layer in self.layers if name in layer.inbound]

    def layer_details(self) -> tuple[LayerDetail, ...]:
        return tuple(
            LayerDetail(x.name, x.class_name, x.output_shapes[0] if x.output_shapes else (), x.parameters)
            for x in self.layers
        )


@dataclass(frozen=True)
class LayerDetail:
    """One layer as a caller sees it: real name (nested as `block/conv`), class, first output shape."""

    name: str
    class_name: str
    output_shape: Shape
    parameters: int
