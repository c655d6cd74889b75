"""What a model may declare, checked from its config before Keras loads it: weightless resource bombs.

An archive of a few KB can declare `Dense(100_000_000)` (1.6 GB of kernel allocated at load),
`RepeatVector(50_000_000)` (gigabytes at the first Predict), an Input of ten million features (what a
Diagnose probe would allocate), or thousands of parallel layers (minutes of graph building). None of that
needs weights in the archive, so the scanner's size checks never see it.

The layer count is read from the config as JSON. Parameters and output shapes come from a *skeleton*: the
config deserialized inside a Keras `StatelessScope` that never initializes variables, so every weight
has a shape and no memory, and every layer's output is a symbolic tensor with its declared shape.

A check that cannot measure refuses. Two things stand between a config and its skeleton:

- A stateful recurrent layer creates its state variables (batch x state size, at the input's static batch)
  from concrete zeros while it is built, which a stateless scope forbids. It is measured as its stateless
  twin (`stateful` changes no shape and no weight), and its state is counted with the parameters, from the
  symbolic shape of the initial state: so a stateful layer at a declared batch of a billion is refused too.
- Anything else that will not rebuild without memory is refused, naming the layer that would not
  (each layer of the config rebuilt on its own finds it), rather than loaded unmeasured.

Sizes are counted in bytes, by each tensor's and variable's own dtype; the bounds are stated in elements of
float32 (4 bytes), so a float64 model counts twice its elements and a float16 one half.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from layerscope.service.domain.call_budget import CallBounds, SampleCost
from layerscope.service.errors import UnsafeModel

FLOAT32_BYTES = 4
"""The bounds count elements of float32: a bound of N elements admits N * 4 bytes of any dtype."""


@dataclass(frozen=True)
class ModelBudget:
    """Bounds on what a model declares, on the work of one call, and on what its training probe keeps; per
    sample means per row of a batch. Elements are of float32: each tensor counts its bytes (by its dtype)
    divided by 4."""

    max_layers: int = 1000
    max_parameters: int = 250_000_000
    max_layer_elements: int = 1 << 25
    """Elements of one layer's output per sample: 32 Mi, 128 MiB of float32 (EfficientNetB7 at 600x600
    declares 17 Mi)."""
    max_total_elements: int = 1 << 31
    """Elements of every layer's outputs together per sample: 2 Gi, what one sample's forward pass writes
    (EfficientNetB7 at 600x600 writes 1.0 Gi); a bound on time more than memory, as each is freed once used."""
    max_input_elements: int = 1 << 22
    """Elements of one model input per sample: 4 Mi (a 1024x1024x3 image is 3 Mi). Diagnose's probes are
    24 rows of every input, so this bounds them too."""
    max_batch_size: int = CallBounds.max_batch_size
    max_call_layer_bytes: int = CallBounds.max_layer_bytes
    """Bytes one layer output may hold for a whole batch (`CallBounds`): per sample x batch."""
    max_call_total_bytes: int = CallBounds.max_total_bytes
    """Bytes all layer outputs of one call may hold together."""
    max_probe_bytes: int = 2 << 30
    """Bytes a kept training probe may hold (a clone of the weights and the optimizer's slots: about 3x the
    weights with Adam); a Diagnose whose probe would hold more is refused before it is built."""
    probe_idle_seconds: float = 300.0
    """A kept training probe is let go after this long unused (the next probe builds and traces it again)."""

    def call_bounds(self) -> CallBounds:
        return CallBounds(self.max_batch_size, self.max_call_layer_bytes, self.max_call_total_bytes)


@dataclass(frozen=True)
class Tensor:
    """One declared tensor (a layer output, an input, or all parameters): its size per sample."""

    name: str
    elements: int
    bytes: int
    dtype: str

    def describe(self) -> str:
        return f"{self.elements} {self.dtype} elements ({self.bytes} bytes)"


NO_TENSOR = Tensor("", 0, 0, "float32")


@dataclass(frozen=True)
class Declared:
    """What a model declares, measured before it loads. Outputs and inputs are per sample."""

    layers: int
    parameters: int
    """Elements of every variable, with the state of stateful recurrent layers."""
    parameter_bytes: int
    largest_output: Tensor
    """The layer output with the most bytes per sample."""
    total_elements: int
    total_bytes: int
    """Bytes of every layer output (inputs included) per sample: what one sample's forward pass writes."""
    largest_input: Tensor = NO_TENSOR
    state: int = 0
    """Of the parameters, the elements of stateful recurrent layers' state."""

    def cost(self) -> SampleCost:
        """What one sample costs a call, for the batch bound."""
        return SampleCost(self.largest_output.name, self.largest_output.bytes, self.total_bytes)


def count_layers(config: Any) -> int:
    """Layers in the config, nested models' included, counted as JSON (no Keras)."""
    count = 0
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            layers = node.get("layers")
            if isinstance(layers, list):
                count += len(layers)
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return count


def check_budget(config: dict[str, Any], budget: ModelBudget) -> Declared:
    """Raise UnsafeModel naming the bound, the limit and what the model declares; else what it declares."""
    layers = count_layers(config)
    if layers > budget.max_layers:
        raise UnsafeModel(f"Expected a model of at most {budget.max_layers} layers; received one declaring {layers}.")
    declared = _measure(config, layers)
    if declared.parameter_bytes > budget.max_parameters * FLOAT32_BYTES:
        raise UnsafeModel(
            f"Expected a model of at most {budget.max_parameters} parameters ({_as_float32(budget.max_parameters)}); "
            f"received one declaring {declared.parameters}{_of_which(declared.state)} ({declared.parameter_bytes} "
            "bytes, before loading it)."
        )
    largest = declared.largest_input
    if largest.bytes > budget.max_input_elements * FLOAT32_BYTES:
        raise UnsafeModel(
            f"Expected model inputs of at most {budget.max_input_elements} elements per sample "
            f"({_as_float32(budget.max_input_elements)}); received input '{largest.name}' declaring "
            f"{largest.describe()}."
        )
    largest = declared.largest_output
    if largest.bytes > budget.max_layer_elements * FLOAT32_BYTES:
        raise UnsafeModel(
            f"Expected layer outputs of at most {budget.max_layer_elements} elements per sample "
            f"({_as_float32(budget.max_layer_elements)}); received layer '{largest.name}' declaring "
            f"{largest.describe()}."
        )
    if declared.total_bytes > budget.max_total_elements * FLOAT32_BYTES:
        raise UnsafeModel(
            f"Expected layer outputs of at most {budget.max_total_elements} elements per sample in all "
            f"({_as_float32(budget.max_total_elements)}); received a model declaring {declared.total_elements} "
            f"({declared.total_bytes} bytes)."
        )
    bounds = budget.call_bounds()
    if bounds.largest_batch(declared.cost()) < 1:  # it could never be called: refused now, not at every call
        raise UnsafeModel(
            f"Expected a model that one call can run on at least one sample; received one that cannot: "
            f"{bounds.why(declared.cost())}."
        )
    return declared


def _of_which(state: int) -> str:
    return f", of which {state} the state of stateful recurrent layers," if state else ""


def _as_float32(elements: int) -> str:
    return f"of float32: {elements * FLOAT32_BYTES} bytes"


def _measure(config: dict[str, Any], layers: int) -> Declared:
    twin, stateful = _stateless_twin(config)
    skeleton = _skeleton(twin)
    parameters = parameter_bytes = 0
    for weight in skeleton.weights:
        elements = _elements(weight.shape)
        parameters += elements
        parameter_bytes += elements * itemsize(weight.dtype)
    state = 0
    for tensor in _states(skeleton, stateful):
        state += tensor.elements
        parameter_bytes += tensor.bytes
    parameters += state
    largest = largest_input = NO_TENSOR
    total = total_bytes = 0
    for tensor, is_input in _outputs(skeleton):
        total += tensor.elements
        total_bytes += tensor.bytes
        if is_input and tensor.bytes > largest_input.bytes:
            largest_input = tensor
        elif not is_input and tensor.bytes > largest.bytes:
            largest = tensor
    return Declared(layers, parameters, parameter_bytes, largest, total, total_bytes, largest_input, state)


def _stateless_twin(config: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """The config with every `stateful: true` made false (the compile config left out: data only), and the
    names of the layers that were stateful."""
    twin = copy.deepcopy({k: v for k, v in config.items() if k != "compile_config"})
    names: set[str] = set()
    stack: list[Any] = [twin]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("stateful") is True:
                node["stateful"] = False
                names.add(str(node.get("name", "")))
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return twin, frozenset(names)


def _skeleton(config: dict[str, Any]) -> Any:
    """The model without memory: variables created uninitialized. Refused (UnsafeModel) when it cannot be
    built so: the layer that would not rebuild is named."""
    try:
        with _stateless():
            return _deserialize(config)
    except UnsafeModel:
        raise
    except Exception as exc:  # measuring failed: refuse rather than load a model no bound has seen
        culprit = _culprit(config)
        cause = _root(exc)
        raise UnsafeModel(
            f"Expected a model whose declared sizes can be measured before it loads (every layer rebuilt without "
            f"memory); received one whose {culprit} could not be: {type(cause).__name__}: {_first_line(cause)}"
        ) from exc


def _deserialize(config: dict[str, Any]) -> Any:
    """Keras's deserialization of a copy (it edits the config it is given)."""
    import keras

    return keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True)


@contextmanager
def _stateless() -> Iterator[None]:
    """A Keras `StatelessScope` that never initializes variables, and that forgets the variables made in it:
    the next scope to close would otherwise allocate them all."""
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    pending = "uninitialized_variables"  # Keras's (thread-local) list of variables to initialize later
    before = list(global_state.get_global_attribute(pending, []) or [])
    try:
        with StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute(pending, before)


def _culprit(config: dict[str, Any]) -> str:
    """The first layer of the config (innermost first) that does not rebuild on its own without memory, as
    "layer 'name' (Class)"; the model itself when each layer does."""
    for entry in _layer_entries(config):
        try:
            with _stateless():
                _deserialize(entry)
        except UnsafeModel:
            raise
        except Exception:  # this one is what could not be measured
            return f"layer {_quoted(entry.get('name') or _name(entry))} ({entry['class_name']})"
    return f"model {_quoted(_name(config))} ({config.get('class_name')}) as a whole"


def _layer_entries(node: Any) -> Iterator[dict[str, Any]]:
    """Every layer entry of the config (an item of a `layers` list), those of a nested model (or inside a
    wrapper) before the entry that holds them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "layers" and isinstance(value, list):
                for item in value:
                    yield from _layer_entries(item)
                    if isinstance(item, dict) and isinstance(item.get("class_name"), str):
                        yield item
            else:
                yield from _layer_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _layer_entries(item)


def _name(entry: dict[str, Any]) -> Any:
    inner = entry.get("config")
    return inner.get("name") if isinstance(inner, dict) else None


def _quoted(name: Any) -> str:
    return f"'{str(name)[:80]}'" if name else "(unnamed)"


def _root(exc: BaseException) -> BaseException:
    """The first error of a chain: Keras wraps what went wrong in several layers of its own."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _states(skeleton: Any, stateful: frozenset[str]) -> Iterator[Tensor]:
    """The state variables each stateful recurrent layer allocates as it is built (batch x state, at the
    static batch of its input), from the symbolic shapes of its initial state: nothing is allocated. A layer
    called inside a wrapper (Bidirectional) has no input of its own: the largest static batch in the model
    stands for it."""
    if not stateful:
        return
    import keras
    from keras.src.backend import compute_output_spec

    layers = list(_flatten(skeleton))
    widest = max((_batch(layer) or 0 for layer in layers), default=0)
    for layer in layers:
        base = layer.name.removeprefix("forward_").removeprefix("backward_")
        if not isinstance(layer, keras.layers.RNN) or (layer.name not in stateful and base not in stateful):
            continue
        batch = _batch(layer) or widest
        if not batch:  # Keras refuses a stateful layer without a static batch when it loads
            continue
        for state in compute_output_spec(layer.get_initial_state, batch):
            elements = _elements(state.shape)
            yield Tensor(layer.name, elements, elements * itemsize(state.dtype), str(state.dtype))


def _batch(layer: Any) -> int | None:
    """The static batch of a layer's inputs, if it has one."""
    for node in getattr(layer, "_inbound_nodes", ()):
        for tensor in (*node.input_tensors, *node.output_tensors):
            if tensor.shape and tensor.shape[0] is not None:
                return int(tensor.shape[0])
    return None


def _flatten(model: Any) -> Iterator[Any]:
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        yield from flatten(include_self=False, recursive=True)


def _outputs(model: Any) -> Iterator[tuple[Tensor, bool]]:
    """Every layer's outputs (each call of a shared layer) per sample, and whether the layer is an input."""
    for layer in _flatten(model):
        for node in getattr(layer, "_inbound_nodes", ()):
            for tensor in node.output_tensors:
                elements = _per_sample(tensor.shape)
                size = elements * itemsize(tensor.dtype)
                yield Tensor(layer.name, elements, size, str(tensor.dtype)), type(layer).__name__ == "InputLayer"


def _elements(shape: tuple[int | None, ...]) -> int:
    return math.prod(int(d) if d is not None else 1 for d in shape)


def _per_sample(shape: tuple[int | None, ...]) -> int:
    """Elements past the batch axis; an unknown dimension counts as 1 (it is bounded by the request)."""
    return _elements(tuple(shape[1:]))


def itemsize(dtype: Any) -> int:
    """Bytes of one element of a Keras dtype (its name); 4 for one NumPy does not know."""
    name = str(getattr(dtype, "name", dtype))
    if name == "bfloat16":
        return 2
    if name.startswith("float8"):
        return 1
    try:
        return int(np.dtype(name).itemsize) or FLOAT32_BYTES
    except TypeError:
        return FLOAT32_BYTES
