from __future__ import annotations

import math

from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import StaticRule
from layerscope.service.diagnosis.rules.outputs import compiled_losses, final_layer, output_range, range_text
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.training import REGRESSION_LOSSES

REGRESSION_BOUNDED = frozenset({"sigmoid", "hard_sigmoid", "softmax", "relu", "relu6"})


class BoundedOutputRegression(StaticRule):
    """A bounded output (sigmoid, softmax, ReLU) compiled with a regression loss (mse, mae, ...): a hint.

    Symptom: a regression loss asks the output to reach the targets, but a sigmoid or softmax output
    never leaves [0, 1] and a ReLU output never goes below 0: unless the targets were scaled into that
    range, the loss stalls at the distance to the nearest bound and the gradients through a saturated
    sigmoid vanish (a common "my regression model predicts a constant" report). Only a hint, since
    sigmoid + MSE on 0/1 or scaled targets is a common working choice: the structure alone cannot tell.
    Remedy: audit with --targets, where output-range-mismatch decides whether the targets lie outside the
    output's range; use a linear output for real-valued targets.
    """

    code = "bounded-output-regression"
    severity = Severity.INFO

    def check_static(self, description: ModelDescription) -> list[Finding]:
        config = description.compile_config or {}
        graph = Graph(description)
        findings = []
        for output, loss in compiled_losses(config.get("loss"), description.outputs):
            layer = final_layer(graph, graph.get(output))
            bounded = output_range(layer)
            if loss.name not in REGRESSION_LOSSES or bounded is None or bounded[0] not in REGRESSION_BOUNDED:
                continue
            activation, bounds = bounded
            findings.append(
                self.finding(
                    [layer.name],
                    f"Output layer '{layer.name}' ends in {activation} (outputs {range_text(bounds)}) under the "
                    f"regression loss {loss.name}; expected targets scaled into {range_text(bounds)} (a linear "
                    f"output otherwise), received a bounded output whose targets the structure cannot tell.",
                    f"Audit with --targets to check the targets against {range_text(bounds)}; drop the "
                    f"{activation} from '{layer.name}' (activation=None) for real-valued targets.",
                    {
                        "activation": activation,
                        "loss": loss.name,
                        "output_range": [b if math.isfinite(b) else None for b in bounds],
                    },
                )
            )
        return findings
