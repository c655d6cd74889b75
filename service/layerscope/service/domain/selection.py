"""Which layers a capture looks at, and what it takes from each."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import translate

from layerscope.service.domain.text import quoted
from layerscope.service.errors import InvalidInput

GRADIENT_KINDS = frozenset({"gradient", "kernel_gradient", "bias_gradient"})
"""Gradients of the loss (on caller targets): of each layer's output, of its kernels, of its biases."""
KINDS = frozenset({"activation", "input", "kernel", "bias", "other"}) | GRADIENT_KINDS
DEFAULT_KINDS = frozenset({"activation", "kernel", "bias"})
MAX_PATTERNS = 256
"""Patterns per list: enough to name every layer of a large model one by one, not 100,000 of them."""
MAX_PATTERN_LENGTH = 256
FLOAT_BYTES = 4  # what an activation of unknown dtype is sized at before the model is traced

Shape = tuple[int | None, ...]
DeclaredLayer = tuple[str, str, Sequence[Shape], Sequence[tuple[str, Shape]]]
"""A layer's path, class, declared output shapes and (kind, shape) of each weight."""


@dataclass(frozen=True)
class Selection:
    """Glob patterns over layer paths (`block/conv*`) or class names (`Conv2D`); `*` is every layer.

    `full` picks the layers whose full tensors leave the device; everything selected gets summaries.
    Each list is compiled once into one expression, not matched pattern by pattern for every layer.
    """

    layers: tuple[str, ...] = ("*",)
    kinds: frozenset[str] = DEFAULT_KINDS
    full: tuple[str, ...] = ()
    _layers: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _full: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(self.kinds - KINDS)
        if unknown:
            raise InvalidInput(f"Expected kinds among {sorted(KINDS)}; received {unknown}.")
        if not self.kinds:
            raise InvalidInput(f"Expected at least one kind among {sorted(KINDS)}; received none.")
        object.__setattr__(self, "_layers", _compile("layers", self.layers))
        object.__setattr__(self, "_full", _compile("full", self.full))

    @property
    def gradients(self) -> frozenset[str]:
        return self.kinds & GRADIENT_KINDS

    def selects(self, path: str, class_name: str) -> bool:
        return _matches(self._layers, path, class_name)

    def wants_full(self, path: str, class_name: str) -> bool:
        return _matches(self._full, path, class_name)

    def wants_variable(self, kind: str) -> bool:
        """`kind` is a variable's role: kernel, bias, or its own name (gamma, moving_mean, ...)."""
        return variable_role(kind) in self.kinds

    def check_names(self, layers: Sequence[tuple[str, str]]) -> None:
        """Every pattern must name some layer (path or class), and every `full` layer must be selected too:
        a typo would otherwise capture nothing and say nothing."""
        names = sorted({_base(p) for p, _ in layers} | {c for _, c in layers})
        for field_name, patterns in (("layers", self.layers), ("full", self.full)):
            unknown = [p for p in patterns if not any(_matches(_compile(field_name, (p,)), *layer) for layer in layers)]
            if unknown:
                raise InvalidInput(
                    f"Expected `{field_name}` patterns that name layers of the model; received "
                    f"[{', '.join(quoted(u) for u in unknown[:10])}]{' and more' if len(unknown) > 10 else ''}, which "
                    f"match none{_close_matches(unknown, names)}."
                )
        outside = sorted({_base(p) for p, c in layers if self.wants_full(p, c) and not self.selects(p, c)})
        if outside:
            raise InvalidInput(
                f"Expected `full` layers among the selected `layers` {list(self.layers)!r}; received {outside[:10]!r} "
                "outside them. Add them to `layers`, or drop them from `full`."
            )

    def declared_full_bytes(self, layers: Iterable[DeclaredLayer], batch: int) -> int:
        """Bytes the full activations and weights would take, from each layer's declared shapes (float32),
        before the model is traced."""
        total = 0
        for path, class_name, outputs, weights in layers:
            if not (self.wants_full(path, class_name) and _matches(self._layers, path, class_name)):
                continue
            per_output = len({"activation", "gradient"} & self.kinds)  # a layer's gradient has its output's shape
            total += per_output * sum(math.prod(batch if d is None else d for d in s) for s in outputs) * FLOAT_BYTES
            kept = [shape for kind, shape in weights if self.wants_variable(kind)]
            kept += [shape for kind, shape in weights if f"{variable_role(kind)}_gradient" in self.kinds]
            total += sum(math.prod(d or 1 for d in shape) for shape in kept) * FLOAT_BYTES
        return total


def variable_role(name: str) -> str:
    """The role is in the last part: `forward_lstm/recurrent_kernel` is a kernel (capture/weights.py)."""
    name = name.rsplit("/", 1)[-1]
    if name.endswith("kernel"):
        return "kernel"
    if name == "bias":
        return "bias"
    return "other"


def _compile(field_name: str, patterns: tuple[str, ...]) -> re.Pattern[str]:
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"Expected at most {MAX_PATTERNS} `{field_name}` patterns; received {len(patterns)}.")
    longest = max((len(p) for p in patterns), default=0)
    if longest > MAX_PATTERN_LENGTH:
        raise InvalidInput(
            f"Expected `{field_name}` patterns of at most {MAX_PATTERN_LENGTH} characters; received one of {longest}."
        )
    # fnmatch's translation, every pattern in one alternation; an empty list matches nothing.
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns) or r"(?!)")


def _base(path: str) -> str:
    return path.rsplit(":", 1)[0]


def _matches(pattern: re.Pattern[str], path: str, class_name: str) -> bool:
    return bool(pattern.match(_base(path)) or pattern.match(class_name))


def _close_matches(unknown: list[str], names: list[str]) -> str:
    close = sorted({m for u in unknown for m in difflib.get_close_matches(u, names, n=3, cutoff=0.6)})
    return f"; close matches: {close}" if close else f"; the model's layers include {names[:10]}"
