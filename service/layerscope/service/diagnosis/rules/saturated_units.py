from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_bool, check_fraction
from layerscope.service.diagnosis.scales import fraction_near_bounds, initial_batchnorm, outputs_in_order
from layerscope.service.domain.description import LayerInfo, ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.summary import Summary

BOUNDS = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hard_tanh": (-1.0, 1.0)}


class SaturatedUnits(RuntimeRule):
    """Most sigmoid/tanh outputs sit at their bounds.

    Symptom: a saturated sigmoid or tanh has a derivative near 0, so almost no gradient passes through
    the layer and the layers before it stop learning; its outputs are nearly binary.
    Remedy: normalise the inputs, use a smaller initialisation (glorot) or BatchNormalization before the
    activation, lower the learning rate, or switch hidden layers to relu.

    An output counts as saturated when it lies within `margin` of the output range (5%: tanh beyond
    +-0.9, sigmoid beyond 0.05/0.95 at the coarsest) from a bound, read conservatively from the summary's
    histogram. Output layers are left out by default: a confident classifier's sigmoid output sits at its bounds by
    design, and cross-entropy cancels the sigmoid's derivative.

    Layers downstream of an untrained BatchNormalization (moving mean 0 and variance 1, as after weights=None)
    are skipped unless skip_initial_batchnorm=False: in inference mode it does not normalise, so the scale that
    saturates them (growing block after block in a deep fresh network) is not the one training will see; the
    scale rules stand down alike.
    """

    code = "saturated-units"
    severity = Severity.WARNING

    def __init__(
        self,
        max_saturated_fraction: float = 0.5,
        margin: float = 0.05,
        include_outputs: bool = False,
        skip_initial_batchnorm: bool = True,
    ) -> None:
        self.max_saturated_fraction = check_fraction("max_saturated_fraction", max_saturated_fraction)
        self.margin = check_fraction("margin", margin)
        self.include_outputs = check_bool("include_outputs", include_outputs)
        self.skip_initial_batchnorm = check_bool("skip_initial_batchnorm", skip_initial_batchnorm)

    def measure(self, layer: LayerInfo, output: Summary) -> float | None:
        """The fraction of outputs within `margin` of a bound, for a bounded activation (None for any other).
        The health gauge reads the same number."""
        bounds = BOUNDS.get(lay.activation(layer) or "")
        return None if bounds is None else fraction_near_bounds(output, bounds[0], bounds[1], self.margin)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        findings = []
        reported: set[str] = set()
        graph = Graph(description)
        untrained = frozenset(initial_batchnorm(description)) if self.skip_initial_batchnorm else frozenset()
        for layer, point, summary in outputs_in_order(graph, evidence):
            saturated = self.measure(layer, summary)
            if saturated is None or layer.name in reported or (graph.is_output(layer) and not self.include_outputs):
                continue
            if saturated <= self.max_saturated_fraction:
                continue
            if untrained and any(up.name in untrained for up in graph.upstream(layer, lambda _: True)):
                continue
            bounds = BOUNDS[lay.activation(layer) or ""]
            reported.add(layer.name)
            findings.append(
                self.finding(
                    [layer.name],
                    f"{layer.class_name} '{layer.name}' ({lay.activation(layer)}) has {saturated:.0%} of its "
                    f"outputs within {self.margin:.0%} of the bounds {bounds}; expected at most "
                    f"{self.max_saturated_fraction:.0%}, received {saturated:.0%}.",
                    f"Normalise the inputs of '{layer.name}' or add BatchNormalization before its activation; "
                    f"consider relu for hidden layers.",
                    {
                        "capture_point": point,
                        "saturated_fraction": saturated,
                        "bounds": list(bounds),
                        "mean": summary.mean,
                        "std": summary.std,
                    },
                )
            )
        return findings
