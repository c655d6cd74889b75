"""Names for a layer's weights that stay unambiguous when a layer holds several of one role.

A wrapper or composite layer (Bidirectional, MultiHeadAttention, a custom layer with sublayers) owns
variables whose own names repeat: Bidirectional(LSTM) has two `kernel`s, two `recurrent_kernel`s and two
`bias`es. Keyed by `variable.name`, the later one silently replaced the earlier. Here a name that is unique
within its layer stays short (`kernel`, `gamma`, `embeddings`); a repeated one is prefixed with the sublayer
that owns it (`forward_lstm/kernel`, `query/bias`), so each stays reachable and its role (the last part)
still decides which capture kind holds it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import keras
import numpy as np

MAX_NAME = 64
"""The store keeps a kind in 64 characters; a longer name falls back to `N/name`."""


def named_weights(layer: keras.Layer) -> dict[str, Any]:
    """A layer's variables under unambiguous names, in the layer's order; none for a nested model."""
    if isinstance(layer, keras.Model):
        return {}
    variables = list(layer.weights)
    repeated = {name for name, n in Counter(v.name for v in variables).items() if n > 1}
    names = [_owner_name(layer, v) if v.name in repeated else v.name for v in variables]
    if len(set(names)) < len(names) or any(len(n) > MAX_NAME for n in names):
        names = _numbered(variables, repeated)
    return dict(zip(names, variables, strict=True))


def weight_values(layer: keras.Layer) -> dict[str, np.ndarray]:
    """`named_weights` with each variable's current value."""
    return {name: np.asarray(v.numpy()) for name, v in named_weights(layer).items()}


def _owner_name(layer: keras.Layer, variable: Any) -> str:
    """`owner/name`: the sublayer directly under `layer` that holds the variable, then its own name."""
    parts = _relative_path(layer, variable).split("/")
    return variable.name if len(parts) < 2 else f"{parts[0]}/{variable.name}"


def _relative_path(layer: keras.Layer, variable: Any) -> str:
    path = str(getattr(variable, "path", variable.name))
    prefix = f"{layer.name}/"
    start = path.find(prefix)
    return path[start + len(prefix) :] if start >= 0 else path


def _numbered(variables: list[Any], repeated: set[str]) -> list[str]:
    """`0/kernel`, `1/kernel`, ...: the last resort when owners repeat too or names grow too long."""
    seen: Counter[str] = Counter()
    names = []
    for v in variables:
        n = seen[v.name]
        seen[v.name] += 1
        names.append(f"{n}/{v.name}" if v.name in repeated else v.name)
    return names
