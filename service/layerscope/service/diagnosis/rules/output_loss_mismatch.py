from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.diagnosis.rules.outputs import Loss, compiled_losses, final_layer
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.training import REGRESSION_LOSSES

CROSS_ENTROPY = frozenset(
    {
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "binary_focal_crossentropy",
        "categorical_focal_crossentropy",
    }
)
CATEGORICAL = frozenset(
    {"categorical_crossentropy", "sparse_categorical_crossentropy", "categorical_focal_crossentropy"}
)
BINARY = frozenset({"binary_crossentropy", "binary_focal_crossentropy"})


class OutputLossMismatch(StaticRule):
    """The last activation does not fit the compiled loss.

    Symptom: the loss computes something other than intended: cross-entropy on values that are not
    probabilities (logits without from_logits=True) gives NaN or meaningless gradients, probabilities
    passed as logits squash gradients, sigmoid with categorical cross-entropy or softmax with binary
    cross-entropy over several units optimises the wrong objective, categorical cross-entropy over one
    unit is always 0, and a softmax output cannot follow a regression target.
    Remedy: pair sigmoid with binary cross-entropy, softmax with (sparse) categorical cross-entropy, a
    linear output with from_logits=True (or a regression loss), and set from_logits to match the output.
    """

    code = "output-loss-mismatch"
    severity = Severity.ERROR

    def check_static(self, description: ModelDescription) -> list[Finding]:
        config = description.compile_config or {}
        graph = Graph(description)
        findings = []
        for output, loss in compiled_losses(config.get("loss"), description.outputs):
            layer = final_layer(graph, graph.get(output))
            problem = _problem(lay.activation(layer), lay.units(layer), loss)
            if problem is None:
                continue
            expected, fix = problem
            activation = lay.activation(layer) or "linear"
            findings.append(
                self.finding(
                    [layer.name],
                    f"Output layer '{layer.name}' ends in {activation} over {lay.units(layer)} unit(s) under loss "
                    f"{loss.name}; expected {expected}, received {activation} with from_logits={loss.from_logits}.",
                    fix,
                    {
                        "activation": activation,
                        "units": lay.units(layer),
                        "loss": loss.name,
                        "from_logits": loss.from_logits,
                    },
                )
            )
        return findings


def _problem(activation: str | None, units: int | None, loss: Loss) -> tuple[str, str] | None:
    """(what was expected, how to fix it), or None when the pair fits."""
    probabilities = activation in lay.PROBABILITY
    if loss.name in CATEGORICAL and units == 1:
        return (
            "at least 2 units for a categorical cross-entropy (over 1 unit it is always 0)",
            "Use binary_crossentropy with one sigmoid unit, or one unit per class with softmax.",
        )
    if loss.name in CATEGORICAL and activation == "sigmoid":
        return (
            "softmax (or logits with from_logits=True) for a categorical cross-entropy",
            "Use activation='softmax' on the output, or binary_crossentropy for independent labels.",
        )
    if loss.name in BINARY and activation == "softmax" and (units or 0) > 1:
        return (
            "sigmoid outputs for a binary cross-entropy over several units",
            "Use categorical_crossentropy with softmax for one label per example, or sigmoid for multi-label.",
        )
    if loss.name in CROSS_ENTROPY and not probabilities and not loss.from_logits:
        return (
            "probabilities (sigmoid/softmax) or from_logits=True, since the output is not a probability",
            f"Compile with keras.losses.{_class(loss.name)}(from_logits=True), or end in sigmoid/softmax.",
        )
    if loss.name in CROSS_ENTROPY and probabilities and loss.from_logits:
        return (
            "logits (a linear output) when from_logits=True",
            f"Drop the {activation} from the output layer, or compile with from_logits=False.",
        )
    if loss.name in REGRESSION_LOSSES and activation == "softmax":
        return (
            "an unbounded (linear) output for a regression loss; softmax forces outputs to sum to 1",
            "Use a linear output for regression, or a cross-entropy loss for class probabilities.",
        )
    return None


def _class(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")).replace("crossentropy", "Crossentropy")
