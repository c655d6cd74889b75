"""A caller's input arrays against a model's inputs, by name and value, before anything runs.

Predict, Capture and Diagnose check alike: every name must be one of the model's inputs (an unnamed tensor
takes a single-input model's one input by position), and an array of another width than its input's
dtype is converted only where every value keeps its meaning: float64 for a float32 input is computed in
float32, as the model would compute it anyway, but a value past float32's range (it would become Inf) or
an integer past the input's integer type (it would wrap around) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.text import quoted
from layerscope.service.errors import InvalidInput

UNNAMED_INPUT = "input_{}"
"""The name an unnamed tensor gets on the server (`input_0`, `input_1`, ...: its position)."""
_UNNAMED = re.compile(r"input_\d+")


def check_inputs(model: str, specs: tuple[InputSpec, ...], inputs: Mapping[str, np.ndarray]) -> None:
    """Refuse names the model does not have, naming the ones it does, and conversions that change values."""
    expected = [spec.name for spec in specs]
    unknown = [name for name in inputs if name not in expected and not _UNNAMED.fullmatch(name)]
    if unknown:
        raise InvalidInput(
            f"Model '{model}' expects inputs {expected}; received [{', '.join(quoted(n) for n in inputs)}]: "
            f"{', '.join(quoted(n) for n in unknown)} {'is not one' if len(unknown) == 1 else 'are not'} of them."
        )
    by_name = {spec.name: spec for spec in specs}
    if len(specs) == 1 and len(inputs) == 1:
        by_name = {name: specs[0] for name in inputs}
    for name, array in inputs.items():
        spec = by_name.get(name)
        if spec is not None:
            _check_conversion(spec, np.asarray(array))


def _check_conversion(spec: InputSpec, array: np.ndarray) -> None:
    try:
        expected = np.dtype(spec.dtype)
    except TypeError:
        return  # a string input: refused before this, with its own reason
    received = array.dtype
    integers = received.kind in "iu" and expected.kind in "iu"
    if received == expected or array.size == 0 or not (received.kind == expected.kind or integers):
        return  # the same type; or a change of kind, which the engine refuses naming both types
    if expected.kind == "f" and received.itemsize > expected.itemsize:
        limit = float(np.finfo(expected).max)
        finite = array[np.isfinite(array)]
        if finite.size and float(np.abs(finite).max()) > limit:
            raise InvalidInput(
                f"Input '{spec.name}' expects dtype {expected.name}; received {received.name} with values up to "
                f"{float(np.abs(finite).max()):g}, past {expected.name}'s largest ({limit:g}): they would become "
                f"Inf. Scale them first, then x.astype('{expected.name}')."
            )
    if integers and (outside := outside_integer_range(array, expected)) is not None:
        info, (low, high) = np.iinfo(expected), outside
        raise InvalidInput(
            f"Input '{spec.name}' expects dtype {expected.name} (values in [{info.min}, {info.max}]); received "
            f"{received.name} with values in [{low}, {high}]: they would wrap around. Map them into that range "
            f"first, then x.astype('{expected.name}')."
        )


def outside_integer_range(values: np.ndarray, dtype: np.dtype[Any]) -> tuple[int, int] | None:
    """The values' (min, max) when some lie outside what the integer `dtype` holds (a cast would wrap them
    around); None when all fit."""
    if not values.size:
        return None
    bounds = np.iinfo(dtype)
    low, high = int(values.min()), int(values.max())
    return (low, high) if low < bounds.min or high > bounds.max else None
