"""Values made fit for JSON and protobuf Struct."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

JsonValue = Any


def jsonable(value: Any) -> Any:
    """Evidence may hold NumPy scalars, tuples and non-finite floats; JSON and protobuf Struct take none."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
