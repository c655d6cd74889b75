"""Healthy models stay free of error and warning findings, statically and on probe inputs.

keras.applications models are built with weights=None, once per module, at the smallest input size at
which their deepest maps still hold their kernels (see test_minimum_input_size_is_reported for 32x32).
Expected info findings are part of the record: ResNet50 puts a bias in front of every BatchNormalization.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import keras
import numpy as np
import pytest

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.models.describe import describe
from tests.diagnosis import zoo
from tests.diagnosis.harness import evidence_for, training_evidence_for

APPLICATIONS: dict[str, tuple[int, int]] = {
    # name: (input side, classes). 64 keeps ResNet50/DenseNet121/MobileNetV2's last maps at 2x2, where a 3x3
    # kernel still trains every tap; EfficientNetB0 has 5x5 depthwise kernels at 1/32 resolution, so it needs
    # 96; ConvNeXtTiny has 7x7 depthwise kernels at 1/32 resolution (at 64 they run over a 2x2 map and rightly
    # fire feature-map-too-small), so 128 keeps its last maps at 4x4. ConvNeXtTiny also holds Dense pointwise
    # projections on rank-4 maps and LayerNormalization between linear layers: healthy on purpose.
    "ResNet50": (64, 1000),
    "MobileNetV2": (64, 1000),
    "DenseNet121": (64, 1000),
    "VGG16": (32, 1000),
    "EfficientNetB0": (96, 1000),
    "ConvNeXtTiny": (128, 10),
}

TUTORIALS: dict[str, tuple[Callable[[], keras.Model], object]] = {
    "mlp_relu": (zoo.mlp_relu, "binary_crossentropy"),
    "small_cnn": (zoo.small_cnn, "categorical_crossentropy"),
    "tutorial_cnn": (zoo.tutorial_cnn, "categorical_crossentropy"),
    "tf_cifar_tutorial_cnn": (zoo.tf_cifar_tutorial_cnn, keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
    "fashion_mnist_tutorial_mlp": (
        zoo.fashion_mnist_tutorial_mlp,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    ),
    "pointwise_linear_bottleneck": (zoo.pointwise_linear_bottleneck, "categorical_crossentropy"),
    "generator_upsampling": (zoo.generator_upsampling, None),
    "convnext_like_block": (zoo.convnext_like_block, "categorical_crossentropy"),
    "mlp_mixer_like": (zoo.mlp_mixer_like, "categorical_crossentropy"),
}


def loud(findings: list[Finding]) -> list[str]:
    return [f"{f.severity.value} {f.code}: {f.message}" for f in findings if f.severity != Severity.INFO]


@pytest.fixture(scope="module", params=sorted(APPLICATIONS))
def application(request: pytest.FixtureRequest) -> Iterator[tuple[keras.Model, ModelDescription]]:
    name = request.param
    side, classes = APPLICATIONS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3), classes=classes)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    yield model, describe(model, model.get_compile_config())
    keras.backend.clear_session()


def test_applications_are_clean_statically_and_on_probes(application: tuple[keras.Model, ModelDescription]) -> None:
    model, description = application
    diagnoser = Diagnoser()
    assert loud(diagnoser.diagnose(description)) == []
    findings = diagnoser.diagnose(description, evidence_for(model, description, batch=12))
    assert loud(findings) == []
    infos = {f.code for f in findings}
    if model.name == "resnet50":
        assert infos == {"bias-before-batchnorm"}  # keras.applications' ResNet50 keeps conv biases before BN
    else:
        assert infos == set(), [f.message for f in findings]


@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_models_are_clean(name: str) -> None:
    build, loss = TUTORIALS[name]
    model = build()
    config = None
    if loss is not None:
        model.compile(optimizer="adam", loss=loss)
        config = model.get_compile_config()
    description = describe(model, config)
    findings = Diagnoser().diagnose(description, evidence_for(model, description))
    assert findings == [], [f.message for f in findings]


def targets_for(
    model: keras.Model, description: ModelDescription, loss: object, batch: int = 16
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Seeded inputs in [-1, 1] and labels the loss expects: one-hot, 0/1, or class indices."""
    rng = np.random.default_rng(0)
    shape = description.inputs[0].shape[1:]
    x = rng.uniform(-1, 1, size=(batch, *shape)).astype("float32")
    units = int(model.outputs[0].shape[-1])
    labels = rng.integers(0, units if units > 1 else 2, size=batch)
    name = loss if isinstance(loss, str) else type(loss).__name__
    if "Sparse" in name:
        return {"x": x}, {"y": labels}
    if name == "binary_crossentropy":
        return {"x": x}, {"y": labels.reshape(batch, 1).astype("float32")}
    return {"x": x}, {"y": np.eye(units, dtype="float32")[labels]}


@pytest.mark.parametrize("name", sorted(n for n, (_, loss) in TUTORIALS.items() if loss is not None))
def test_tutorial_models_are_clean_with_targets_and_a_probe(name: str) -> None:
    """Gradients on labels and five probe steps with the compiled optimizer: no training finding either."""
    build, loss = TUTORIALS[name]
    model = build()
    model.compile(optimizer="adam", loss=loss)
    description = describe(model, model.get_compile_config())
    evidence = training_evidence_for(model, description, *targets_for(model, description, loss))
    findings = Diagnoser().diagnose(description, evidence)
    assert findings == [], [f.message for f in findings]
    assert evidence.training is not None and evidence.training.probe is not None
    steps = evidence.training.probe.steps
    assert steps[-1].loss < steps[0].loss


GRADIENT_APPLICATIONS = {"resnet50", "mobilenetv2_1.00_64"}
"""The applications whose gradients run in every suite (the deepest plain and residual stacks); the other
four add 60 s on two cores and run with LAYERSCOPE_ALL_APPLICATIONS=1 (all were quiet when this was written)."""


def test_applications_are_clean_with_targets(application: tuple[keras.Model, ModelDescription]) -> None:
    """Gradients of the loss on one-hot labels (no probe: tracing a training step of each application
    costs 15-25 s on two cores; the tutorial models above and the corpus run the probe)."""
    model, description = application
    if model.name not in GRADIENT_APPLICATIONS and not os.environ.get("LAYERSCOPE_ALL_APPLICATIONS"):
        pytest.skip(f"{model.name}: gradients checked with LAYERSCOPE_ALL_APPLICATIONS=1 (60 s more)")
    inputs, labels = targets_for(model, description, "categorical_crossentropy", batch=8)
    evidence = training_evidence_for(model, description, inputs, labels, probe_steps=0)
    findings = Diagnoser().diagnose(description, evidence)
    assert loud(findings) == []
    assert evidence.training is not None and len(evidence.training.gradients) > 10


def test_minimum_input_size_is_reported() -> None:
    """At 32x32, ResNet50's conv5 block runs 3x3 kernels on 1x1 maps: eight of nine taps of those kernels
    (over 6M parameters) only ever read padding and never train. That is a real error for this input size,
    so feature-map-too-small names exactly those layers; nothing else is loud."""
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3))
    findings = Diagnoser().diagnose(describe(model))
    assert [f.code for f in findings if f.severity != Severity.INFO] == ["feature-map-too-small"]
    assert findings[0].layers == ("conv5_block1_2_conv", "conv5_block2_2_conv", "conv5_block3_2_conv")
    assert "over an input map of (1, 1)" in findings[0].message
    keras.backend.clear_session()
