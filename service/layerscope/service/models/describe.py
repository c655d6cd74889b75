"""Describe a Keras model as plain data: the flattened layer graph the diagnosis rules read.

Only public Keras API is used, plus the model's own `get_config()` read as data: a Functional config lists
every layer's inbound nodes as `keras_history` triples `[layer, node, tensor]`; a Sequential is a chain.

Operations that are not layers (a functional `x + y` is `keras.ops` Add) are entries too, by their own
names and classes, with no weights, so the graph stays connected through them.

Paths follow the project convention: top-level layers by their name, layers of a nested model as
`sub/layer` (recursively `a/b/layer`), and the nested model itself as the entry `sub`. InputLayers are
left out. `inbound` crosses nested-model boundaries both ways: a nested model's first layers (and the
nested-model entry itself) list the outer producers that feed it, and a layer fed by a nested model lists
the nested model's own output layers (`sub/last`), so following `inbound` always reaches real layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription, Shape, WeightInfo
from layerscope.service.domain.jsonable import JsonValue
from layerscope.service.domain.summary import HISTOGRAM_BINS, Summary, summarize

Feeds = list[list[str]]
"""For each input of a (sub-)model, in flattened order: the paths of the layers that feed it."""


def describe(
    model: keras.Model, compile_config: Mapping[str, JsonValue] | None = None, name: str | None = None
) -> ModelDescription:
    """The model's flattened layer graph, shapes, weights and compile config, as data.

    `compile_config` is what the archive holds (or `model.get_compile_config()` for a model built in
    memory); it is passed through untouched. `name` overrides the model's own name.
    """
    graph = _GraphBuilder()
    outputs = graph.walk(model, "", [])
    layers = tuple(_layer_info(path, layer, graph.inbound[path], graph.parents[path]) for path, layer in graph.order)
    return ModelDescription(
        name=name or str(model.name),
        layers=layers,
        inputs=_input_specs(model),
        outputs=tuple(dict.fromkeys(outputs)),
        parameters=int(model.count_params()),
        compile_config=None if compile_config is None else dict(compile_config),
    )


# -- graph ------------------------------------------------------------------------------------------------


@dataclass
class _GraphBuilder:
    order: list[tuple[str, keras.Layer]] = field(default_factory=list)
    inbound: dict[str, list[str]] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    _outputs: dict[str, Feeds] = field(default_factory=dict)
    """nested-model path -> for each of its outputs, the inner layer paths that produce it."""

    def walk(self, model: keras.Model, prefix: str, feeds: Feeds) -> list[str]:
        """Add `model`'s layers under `prefix`; returns the paths producing its outputs, flattened."""
        config = _safe_config(model)
        entries = config.get("layers") if isinstance(config, Mapping) else None
        if isinstance(entries, list) and all(isinstance(e, Mapping) and "inbound_nodes" in e for e in entries):
            return self._walk_functional(model, config, entries, prefix, feeds)
        return self._walk_chain(model, prefix, feeds)

    def _add(self, path: str, layer: keras.Layer, inbound: Iterable[str], parent: str | None) -> None:
        if path not in self.inbound:
            self.order.append((path, layer))
            self.inbound[path] = []
            self.parents[path] = parent
        for source in inbound:
            if source not in self.inbound[path]:
                self.inbound[path].append(source)

    def _walk_chain(self, model: keras.Model, prefix: str, feeds: Feeds) -> list[str]:
        previous = [p for feed in feeds for p in feed]
        parent = prefix.rstrip("/") or None
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            path = f"{prefix}{layer.name}"
            self._add(path, layer, previous, parent)
            previous = self._enter(path, layer, [previous])[0] if _is_model(layer) else [path]
        return previous

    def _walk_functional(
        self,
        model: keras.Model,
        config: Mapping[str, Any],
        entries: list[Mapping[str, Any]],
        prefix: str,
        feeds: Feeds,
    ) -> list[str]:
        # `operations`, not `layers`: a functional `x + y` or `x[..., :3]` is an operation with no layer
        # behind it, and leaving it out would cut the graph there (a residual Add would go unseen).
        by_name = {op.name: op for op in getattr(model, "operations", None) or model.layers}
        input_names = [h[0] for h in _histories(config.get("input_layers"))]
        fed = {n: feeds[i] if i < len(feeds) else [] for i, n in enumerate(input_names)}
        parent = prefix.rstrip("/") or None

        def resolve(history: Sequence[Any]) -> list[str]:
            source, _node, tensor = str(history[0]), history[1], int(history[2])
            if source in fed:
                return list(fed[source])
            path = f"{prefix}{source}"
            if path in self._outputs:
                produced = self._outputs[path]
                return produced[tensor] if tensor < len(produced) else [p for o in produced for p in o]
            return [path]

        for entry in entries:
            layer = by_name.get(str(entry.get("name")))
            if layer is None or isinstance(layer, keras.layers.InputLayer):
                continue
            path = f"{prefix}{layer.name}"
            for node in entry.get("inbound_nodes", []):
                call_feeds = [resolve(h) for h in _histories(node)]
                self._add(path, layer, (p for feed in call_feeds for p in feed), parent)
                if _is_model(layer):
                    self._enter(path, layer, call_feeds)
        return [p for h in _histories(config.get("output_layers")) for p in resolve(h)]

    def _enter(self, path: str, layer: keras.Model, feeds: Feeds) -> Feeds:
        """Walk a nested model called with `feeds`; remember and return the producers of its outputs."""
        produced = self.walk(layer, f"{path}/", feeds)
        outputs = [[p] for p in produced] if produced else [[path]]
        self._outputs[path] = outputs
        return [[p for o in outputs for p in o]]


def _is_model(layer: keras.Layer) -> bool:
    return isinstance(layer, keras.Model)


def _is_layer(op: Any) -> bool:
    """A layer, as opposed to a bare operation (`x + y` in a functional model): only layers hold weights."""
    return isinstance(op, keras.Layer)


def _safe_config(model: keras.Model) -> Mapping[str, Any]:
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError):  # subclassed models may have none
        return {}
    return config if isinstance(config, Mapping) else {}


def _histories(value: Any) -> Iterator[list[Any]]:
    """Every `[layer, node, tensor]` triple in a config structure: keras_history in inbound nodes, or the
    `input_layers`/`output_layers` entries (one triple, a list of them, or a dict of them by key)."""
    if isinstance(value, Mapping):
        inner = value.get("config")
        history = inner.get("keras_history") if isinstance(inner, Mapping) else None
        if isinstance(history, list):
            yield history
            return
        keys = [k for k in ("args", "kwargs") if k in value] if "args" in value else sorted(value)
        for key in keys:
            yield from _histories(value[key])
    elif isinstance(value, list | tuple):
        if len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
            yield list(value)
            return
        for item in value:
            yield from _histories(item)


# -- layers -----------------------------------------------------------------------------------------------


def _layer_info(path: str, layer: keras.Layer, inbound: list[str], parent: str | None) -> LayerInfo:
    return LayerInfo(
        name=path,
        class_name=type(layer).__name__,
        config=_layer_config(layer),
        input_shapes=_shapes(layer, "input"),
        output_shapes=_shapes(layer, "output"),
        inbound=tuple(inbound),
        parameters=int(layer.count_params()) if _is_layer(layer) and layer.built else 0,
        weights=() if _is_model(layer) or not _is_layer(layer) else tuple(_weight_info(v) for v in layer.weights),
        parent=parent,
    )


def _layer_config(layer: keras.Layer) -> dict[str, JsonValue]:
    try:
        config = dict(layer.get_config())
    except (NotImplementedError, TypeError, ValueError):
        return {"name": layer.name}
    if _is_model(layer):
        config.pop("layers", None)  # the nested layers have their own entries
    result: dict[str, JsonValue] = _json(config)
    return result


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _shapes(layer: keras.Layer, which: str) -> tuple[Shape, ...]:
    try:
        tensors = getattr(layer, which)
    except (AttributeError, ValueError, RuntimeError):  # never called: no symbolic input or output
        return ()
    return tuple(_shape(t.shape) for t in keras.tree.flatten(tensors) if hasattr(t, "shape"))


def _shape(shape: Iterable[Any]) -> Shape:
    return tuple(None if d is None else int(d) for d in shape)


def _weight_info(variable: Any) -> WeightInfo:
    values = np.asarray(keras.ops.convert_to_numpy(variable))
    kind = str(variable.name).rsplit("/", 1)[-1]
    return WeightInfo(
        kind=kind,
        shape=_shape(values.shape),
        summary=_summary(values),
        identical_units=kind == "kernel" and identical_units(values),
    )


def _summary(values: np.ndarray) -> Summary:
    """`summarize()`, or for the one input it cannot take (a constant so large that lo + 1 == lo leaves
    np.histogram no range) the same numbers with every value in the first bin."""
    try:
        return summarize(values, per_unit=False)
    except ValueError:
        flat = values.astype(np.float64).ravel()
        finite = flat[np.isfinite(flat)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        histogram = (int(finite.size),) + (0,) * (HISTOGRAM_BINS - 1)
        return Summary(
            count=int(flat.size),
            mean=float(finite.mean()) if finite.size else 0.0,
            std=float(finite.std()) if finite.size else 0.0,
            min=lo,
            max=hi,
            zero_fraction=float((flat == 0).mean()) if flat.size else 0.0,
            nan=int(np.isnan(flat).sum()),
            posinf=int(np.isposinf(flat).sum()),
            neginf=int(np.isneginf(flat).sum()),
            histogram=histogram,
            histogram_range=(lo, float(np.nextafter(hi, np.inf))),
        )


def identical_units(kernel: np.ndarray) -> bool:
    """True when a kernel of more than one output unit (last axis) holds the same weights in every unit."""
    if kernel.ndim < 2 or kernel.shape[-1] < 2 or kernel.size == 0:
        return False
    columns = kernel.reshape(-1, kernel.shape[-1])
    return bool(np.all(columns == columns[:, :1]))


def _input_specs(model: keras.Model) -> tuple[InputSpec, ...]:
    try:
        tensors = keras.tree.flatten(model.inputs)
    except (AttributeError, ValueError):
        return ()
    return tuple(
        InputSpec(name=str(t.name), shape=_shape(t.shape), dtype=str(keras.backend.standardize_dtype(t.dtype)))
        for t in tensors
    )
