"""The shape every diagnosis rule shares: a code, a severity, checked thresholds, findings as data."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.jsonable import JsonValue

if TYPE_CHECKING:
    from layerscope.service.diagnosis.evidence import RuntimeEvidence, TrainingEvidence

RuleKind = Literal["static", "runtime", "training"]


class Rule(abc.ABC):
    """One finding code. Subclasses set the class attributes, take their thresholds as keyword arguments
    (validated in `__init__`, stored under the same names), and write a docstring with a first line that
    says when the rule fires, then `Symptom:` (why it matters) and `Remedy:` (how to fix it) paragraphs.
    """

    code: ClassVar[str]
    severity: ClassVar[Severity]
    kind: ClassVar[RuleKind]
    explains: ClassVar[frozenset[str]] = frozenset()
    """Codes this rule's finding accounts for: where it fires, the Diagnoser leaves theirs out, so that one
    cause is said once (diverging training explains a loss that does not go down)."""

    @abc.abstractmethod
    def check(self, description: ModelDescription, evidence: RuntimeEvidence | None) -> list[Finding]:
        """Findings for one model: static rules read the description only; runtime rules return nothing
        without evidence."""

    def get_config(self) -> dict[str, JsonValue]:
        """Every constructor argument by name: `type(rule)(**rule.get_config())` builds the same rule."""
        parameters = inspect.signature(type(self).__init__).parameters.values()
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in parameters if p.name != "self" and p.kind in keyword]
        return {name: _plain(getattr(self, name)) for name in names}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Rule:
        return cls(**config)

    def finding(
        self, layers: Sequence[str], message: str, suggestion: str, numbers: Mapping[str, JsonValue]
    ) -> Finding:
        """A finding of this rule; its evidence holds the numbers behind it and the rule's thresholds."""
        return Finding(
            code=self.code,
            severity=self.severity,
            layers=tuple(layers),
            message=message,
            suggestion=suggestion,
            evidence={**numbers, "rule": self.get_config()},
        )

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def _plain(value: Any) -> JsonValue:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# -- argument checks: ValueError naming what was expected and what was received ----------------------------


def check_fraction(name: str, value: float, *, allow_zero: bool = False) -> float:
    """A fraction in (0, 1] ([0, 1] with allow_zero)."""
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not (low_ok and value <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"Expected {name} in {interval}; received {value!r}.")
    return float(value)


def check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0.0:
        raise ValueError(f"Expected {name} > 0; received {value!r}.")
    return float(value)


def check_at_least(name: str, value: float, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ValueError(f"Expected {name} >= {minimum}; received {value!r}.")
    return float(value)


def check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Expected {name} to be a bool; received {value!r}.")
    return value


def check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected {name} to be an integer >= {minimum}; received {value!r}.")
    return value


class StaticRule(Rule, abc.ABC):
    kind: ClassVar[RuleKind] = "static"

    def check(self, description: ModelDescription, evidence: RuntimeEvidence | None) -> list[Finding]:
        return self.check_static(description)

    @abc.abstractmethod
    def check_static(self, description: ModelDescription) -> list[Finding]:
        """Findings from the architecture alone (layers, shapes, configs): no inputs, nothing runs."""


class RuntimeRule(Rule, abc.ABC):
    kind: ClassVar[RuleKind] = "runtime"

    def check(self, description: ModelDescription, evidence: RuntimeEvidence | None) -> list[Finding]:
        return [] if evidence is None else self.check_runtime(description, evidence)

    @abc.abstractmethod
    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        """Findings from one forward pass: summaries of the activations and inputs, and the outputs, over the
        caller's inputs or generated probes."""


class TrainingRule(Rule, abc.ABC):
    """A rule on gradients, targets or the training probe: silent unless the caller gave targets."""

    kind: ClassVar[RuleKind] = "training"

    def check(self, description: ModelDescription, evidence: RuntimeEvidence | None) -> list[Finding]:
        if evidence is None or evidence.training is None:
            return []
        return self.check_training(description, evidence.training)

    @abc.abstractmethod
    def check_training(self, description: ModelDescription, training: TrainingEvidence) -> list[Finding]:
        """Findings from the gradients of the loss, the targets and the training probe's steps."""
