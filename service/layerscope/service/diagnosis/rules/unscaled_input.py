from __future__ import annotations

from layerscope.service.diagnosis import layers as lay
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.graph import Graph
from layerscope.service.diagnosis.rules.base import RuntimeRule, check_positive
from layerscope.service.domain.description import InputSpec, ModelDescription
from layerscope.service.domain.findings import Finding, Severity

SCALING_LAYERS = lay.PREPROCESSING_LAYERS | {"IntegerLookup", "StringLookup", "CategoryEncoding", "Hashing"}


class UnscaledInput(RuntimeRule):
    """The given inputs are far outside a normalised range (raw 0..255 pixels, say).

    Symptom: large input values make the first layer's pre-activations large: sigmoid/tanh saturate,
    ReLUs die or explode, and gradient steps tuned for unit-scale data overshoot.
    Remedy: scale the inputs (x / 255 for pixels, standardise features to mean 0 and std 1), or put a
    Rescaling/Normalization layer at the start of the model. Only the caller's inputs are judged (never
    generated probes), and inputs read by a Rescaling, Normalization or Embedding layer, or with an
    integer dtype, are left alone. Models that expect differently scaled inputs by design (caffe-style
    mean-subtracted pixels for keras.applications ResNet50/VGG16) do get this warning.
    """

    code = "unscaled-input"
    severity = Severity.WARNING

    def __init__(self, max_rms: float = 5.0) -> None:
        self.max_rms = check_positive("max_rms", max_rms)

    def check_runtime(self, description: ModelDescription, evidence: RuntimeEvidence) -> list[Finding]:
        if not evidence.caller_inputs:
            return []
        graph = Graph(description)
        findings = []
        for spec in description.inputs:
            summary = evidence.inputs.get(spec.name)
            if summary is None or _scaled_by_model(graph, spec) or spec.dtype.startswith(("int", "uint", "bool")):
                continue
            if summary.rms <= self.max_rms:
                continue
            readers = [layer.name for layer in graph.layers if spec in graph.model_inputs_of(layer)]
            findings.append(
                self.finding(
                    readers[:1] or [spec.name],
                    f"Input '{spec.name}'{_read_by(readers)} ranges over [{summary.min:.4g}, {summary.max:.4g}] "
                    f"with rms {summary.rms:.4g}; expected a normalised input (rms <= {self.max_rms:g}), received rms "
                    f"{summary.rms:.4g}.",
                    f"Scale '{spec.name}' before calling the model (x / 255 for pixels, or standardise), or add "
                    f"a Rescaling/Normalization layer at its start.",
                    {"input": spec.name, "rms": summary.rms, "min": summary.min, "max": summary.max},
                )
            )
        return findings


def _scaled_by_model(graph: Graph, spec: InputSpec) -> bool:
    return any(layer.class_name in SCALING_LAYERS for layer in graph.layers if spec in graph.model_inputs_of(layer))


def _read_by(readers: list[str]) -> str:
    return f" (read by '{readers[0]}')" if readers else ""
