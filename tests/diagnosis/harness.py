"""Run a real Keras model and turn what it computed into RuntimeEvidence, as the capture engine would.

Every layer's output is taken with `keras.Model(model.inputs, [layer.output ...])` and summarised with the
NumPy reference `summarize()`; a nested model is run the same way on the values its outer producers
computed, so nested paths (`sub/layer`) get their summaries too.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.synthetic_inputs import probe_inputs
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding
from layerscope.service.domain.summary import summarize
from layerscope.service.models.describe import describe


def layer_outputs(model: keras.Model, arrays: list[np.ndarray], description: ModelDescription) -> dict[str, np.ndarray]:
    """path -> output array of the layer's first call, for every layer (nested ones included)."""
    values: dict[str, np.ndarray] = {}
    _run(model, arrays, "", description, values, {})
    return values


def _run(
    model: keras.Model,
    arrays: list[np.ndarray],
    prefix: str,
    description: ModelDescription,
    values: dict[str, np.ndarray],
    ops: dict[str, np.ndarray],
) -> None:
    # A Functional model's operations include the Keras ops that join its layers (`x + y` is an `Add` op,
    # not a layer) and that a nested model may be fed by (ConvNeXt's down-sampling blocks): their values go
    # to `ops`, for feeding only.
    operations = getattr(model, "operations", None) or model.layers
    taken = [op for op in operations if not isinstance(op, keras.layers.InputLayer)]
    taps = keras.Model(model.inputs, [keras.tree.flatten(op.output)[0] for op in taken])
    outputs = taps(list(arrays), training=False)
    for op, output in zip(taken, outputs, strict=True):
        (values if isinstance(op, keras.layers.Layer) else ops)[f"{prefix}{op.name}"] = np.asarray(output)
    for layer in taken:
        if isinstance(layer, keras.Model):
            path = f"{prefix}{layer.name}"
            feeds = [values[name] if name in values else ops[name] for name in description.layer(path).inbound]
            _run(layer, feeds or arrays, f"{path}/", description, values, ops)


def evidence_for(
    model: keras.Model,
    description: ModelDescription | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    batch: int = 12,
) -> RuntimeEvidence:
    """Evidence from one forward pass over the caller's `inputs`, or over seeded probes when None."""
    description = description or describe(model)
    arrays = (
        dict(inputs)
        if inputs is not None
        else probe_inputs(description.inputs, batch=batch, description=description).arrays
    )
    ordered = [np.asarray(arrays[spec.name]) for spec in description.inputs]
    values = layer_outputs(model, ordered, description)
    model_outputs = keras.tree.flatten(model(ordered[0] if len(ordered) == 1 else ordered, training=False))
    return RuntimeEvidence(
        activations={path: {"activation": summarize(v)} for path, v in values.items()},
        inputs={spec.name: summarize(a) for spec, a in zip(description.inputs, ordered, strict=True)},
        outputs=dict(
            zip(_output_names(model, len(model_outputs)), (np.asarray(o) for o in model_outputs), strict=True)
        ),
        caller_inputs=inputs is not None,
    )


def _output_names(model: keras.Model, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == count else [f"output_{i}" for i in range(count)]


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def training_evidence_for(
    model: keras.Model,
    description: ModelDescription,
    inputs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    probe_steps: int = 5,
) -> RuntimeEvidence:
    """Evidence with gradients, targets and a probe, from the capture engine itself (as a Diagnose with y)."""
    from layerscope.service.capture.engine import CaptureEngine
    from layerscope.service.domain.training import TrainingOptions
    from layerscope.service.model_diagnosis import training_evidence

    engine = CaptureEngine(model, compile_config=description.compile_config)
    _, evidence = training_evidence(engine, inputs, targets, TrainingOptions(), probe_steps)
    return evidence
