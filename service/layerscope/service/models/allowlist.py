"""What a serialized object in a model config may name: built from Keras's own class hierarchy and export table.

Keras resolves `{"module": M, "class_name": C}` by looking up `M.C` among everything it exports, and returns
an exported *function* as readily as a class: `{"module": "keras.config", "class_name": "set_epsilon"}` used
as an activation changes the process for every later model. A block list cannot keep up with every export,
so the scanner admits an object only if Keras would resolve it to one of the modelling kinds below.

The tables are built once, on first use, from the classes loaded with Keras (every subclass of an allowed
base whose module is Keras's) and from Keras's export table (the public names it writes into configs).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"})
"""Class names Keras decodes as plain values, never by looking a symbol up."""

FUNCTION_FAMILIES = ("activations", "losses", "metrics", "initializers", "regularizers", "constraints")
_NOT_MODELLING = frozenset({"get", "serialize", "deserialize"})  # the families' own look-up helpers


@dataclass(frozen=True)
class AllowList:
    classes: frozenset[tuple[str, str]]
    """(module, class_name) pairs, as Keras writes them (public API path) and as Python names them."""
    class_names: frozenset[str]
    """Bare class names: objects written without a module resolve among these only."""
    functions: frozenset[str]
    """Names of functions of the families above (an activation named as `{"class_name": "function"}`)."""

    def admits_class(self, module: str | None, class_name: str) -> bool:
        if module is None:
            return class_name in self.class_names
        return (module, class_name) in self.classes


def _allowed_bases() -> tuple[type, ...]:
    from keras.src.constraints.constraints import Constraint
    from keras.src.dtype_policies.dtype_policy import DTypePolicy
    from keras.src.initializers.initializer import Initializer
    from keras.src.losses.loss import Loss
    from keras.src.metrics.metric import Metric
    from keras.src.ops.operation import Operation  # layers, models and graph operations (Add, Reshape, ...)
    from keras.src.optimizers.base_optimizer import BaseOptimizer  # only read as data in compile_config
    from keras.src.optimizers.schedules.learning_rate_schedule import LearningRateSchedule
    from keras.src.quantizers.quantizers import Quantizer
    from keras.src.regularizers.regularizers import Regularizer

    return (
        Operation,
        Initializer,
        Regularizer,
        Constraint,
        Loss,
        Metric,
        BaseOptimizer,
        LearningRateSchedule,
        DTypePolicy,
        Quantizer,
    )


def _subclasses(bases: tuple[type, ...]) -> set[type]:
    seen: set[type] = set()
    stack: list[type] = list(bases)
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
    return seen


@functools.cache
def allow_list(refused: frozenset[str] = frozenset()) -> AllowList:
    """The tables, built once per process (importing Keras, which the loader does anyway)."""
    import keras  # noqa: F401  # importing the package loads (and so registers) every built-in class
    from keras.src import api_export

    classes = {
        c for c in _subclasses(_allowed_bases()) if c.__module__.startswith("keras.") and c.__name__ not in refused
    }
    pairs = {(c.__module__, c.__name__) for c in classes}
    functions: set[str] = set()
    exported: dict[str, Any] = api_export.REGISTERED_NAMES_TO_OBJS
    for public, obj in exported.items():
        module, _, name = public.rpartition(".")
        if inspect.isclass(obj) and obj in classes:
            pairs.add((module, name))
        elif inspect.isfunction(obj) and module.split(".")[-1] in FUNCTION_FAMILIES and name not in _NOT_MODELLING:
            functions.add(name)
    return AllowList(frozenset(pairs), frozenset(name for _, name in pairs), frozenset(functions))
