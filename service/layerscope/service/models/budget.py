"""What a model may declare, checked from its config before Keras loads it: weightless resource bombs.

An archive of a few KB can declare `Dense(100_000_000)` (1.6 GB of kernel allocated at load),
`RepeatVector(50_000_000)` (gigabytes at the first Predict), an Input of ten million features (what a
Diagnose probe would allocate), or thousands of parallel layers (minutes of graph building). None of that
needs weights in the archive, so the scanner's size checks never see it.

The layer count is read from the config as JSON. Parameters and output shapes come from a *skeleton*: the
config deserialized inside a Keras `StatelessScope` that never initializes variables, so every weight
has a shape and no memory, and every layer's output is a symbolic tensor with its declared shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from layerscope.service.errors import UnsafeModel


@dataclass(frozen=True)
class ModelBudget:
    """Bounds on what a model declares; per sample means per row of a batch."""

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


@dataclass(frozen=True)
class Declared:
    layers: int
    parameters: int
    largest_output: tuple[str, int]
    total_elements: int
    largest_input: tuple[str, int] = ("", 0)


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
    if declared.parameters > budget.max_parameters:
        raise UnsafeModel(
            f"Expected a model of at most {budget.max_parameters} parameters; received one declaring "
            f"{declared.parameters} (before loading it)."
        )
    name, largest = declared.largest_input
    if largest > budget.max_input_elements:
        raise UnsafeModel(
            f"Expected model inputs of at most {budget.max_input_elements} elements per sample; received input "
            f"'{name}' declaring {largest}."
        )
    name, largest = declared.largest_output
    if largest > budget.max_layer_elements:
        raise UnsafeModel(
            f"Expected layer outputs of at most {budget.max_layer_elements} elements per sample; received "
            f"layer '{name}' declaring {largest}."
        )
    if declared.total_elements > budget.max_total_elements:
        raise UnsafeModel(
            f"Expected layer outputs of at most {budget.max_total_elements} elements per sample in all; received "
            f"a model declaring {declared.total_elements}."
        )
    return declared


def _measure(config: dict[str, Any], layers: int) -> Declared:
    skeleton = _skeleton(config)
    parameters = sum(math.prod(int(d) for d in w.shape) for w in skeleton.weights)
    largest = largest_input = ("", 0)
    total = 0
    for name, elements, is_input in _outputs(skeleton):
        total += elements
        if is_input and elements > largest_input[1]:
            largest_input = (name, elements)
        elif not is_input and elements > largest[1]:
            largest = (name, elements)
    return Declared(layers, parameters, largest, total, largest_input)


def _skeleton(config: dict[str, Any]) -> Any:
    """The model without memory: variables created uninitialized, the compile config left out (data only)."""
    import keras
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    pending = "uninitialized_variables"  # Keras's (thread-local) list of variables to initialize later
    before = list(global_state.get_global_attribute(pending, []) or [])
    try:
        with StatelessScope(initialize_variables=False):
            skeleton = keras.saving.deserialize_keras_object(
                {k: v for k, v in config.items() if k != "compile_config"}, safe_mode=True
            )
    except UnsafeModel:
        raise
    except Exception:  # Keras will refuse the same config at load, with its own message
        return _Empty()
    finally:
        # Forget the skeleton's variables: the next scope to close would otherwise allocate them all.
        global_state.set_global_attribute(pending, before)
    return skeleton


class _Empty:
    weights: tuple[Any, ...] = ()


def _outputs(model: Any) -> Iterator[tuple[str, int, bool]]:
    """Every layer's outputs (each call of a shared layer) in elements per sample, and whether the layer is
    an input."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return
    for layer in flatten(include_self=False, recursive=True):
        for node in getattr(layer, "_inbound_nodes", ()):
            for tensor in node.output_tensors:
                yield layer.name, _per_sample(tensor.shape), type(layer).__name__ == "InputLayer"


def _per_sample(shape: tuple[int | None, ...]) -> int:
    """Elements past the batch axis; an unknown dimension counts as 1 (it is bounded by the request)."""
    return math.prod(int(d) if d is not None else 1 for d in shape[1:])
