"""Which layers a capture looks at, and what it takes from each."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from layerscope.service.errors import InvalidInput

GRADIENT_KINDS = frozenset({"gradient", "kernel_gradient", "bias_gradient"})
"""Gradients of the loss (on caller targets): of each layer's output, of its kernels, of its biases."""
KINDS = frozenset({"activation", "input", "kernel", "bias", "other"}) | GRADIENT_KINDS
DEFAULT_KINDS = frozenset({"activation", "kernel", "bias"})


@dataclass(frozen=True)
class Selection:
    """Glob patterns over layer paths (`block/conv*`) or class names (`Conv2D`); `*` is every layer.

    `full` picks the layers whose full tensors leave the device; everything selected gets summaries.
    """

    layers: tuple[str, ...] = ("*",)
    kinds: frozenset[str] = DEFAULT_KINDS
    full: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(self.kinds - KINDS)
        if unknown:
            raise InvalidInput(f"Expected kinds among {sorted(KINDS)}; received {unknown}.")
        if not self.kinds:
            raise InvalidInput(f"Expected at least one kind among {sorted(KINDS)}; received none.")

    @property
    def gradients(self) -> frozenset[str]:
        return self.kinds & GRADIENT_KINDS

    def selects(self, path: str, class_name: str) -> bool:
        return _matches(self.layers, path, class_name)

    def wants_full(self, path: str, class_name: str) -> bool:
        return _matches(self.full, path, class_name)

    def wants_variable(self, kind: str) -> bool:
        """`kind` is a variable's role: kernel, bias, or its own name (gamma, moving_mean, ...)."""
        return variable_role(kind) in self.kinds


def variable_role(name: str) -> str:
    """The role is in the last part: `forward_lstm/recurrent_kernel` is a kernel (capture/weights.py)."""
    name = name.rsplit("/", 1)[-1]
    if name.endswith("kernel"):
        return "kernel"
    if name == "bias":
        return "bias"
    return "other"


def _matches(patterns: tuple[str, ...], path: str, class_name: str) -> bool:
    base = path.rsplit(":", 1)[0]
    return any(fnmatchcase(base, p) or fnmatchcase(class_name, p) for p in patterns)
