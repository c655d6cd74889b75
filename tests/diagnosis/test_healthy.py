"""Healthy models stay free of error and warning findings, statically and on probe inputs.

Every keras.applications model (its larger twins, `LARGER_TWINS`, with LAYERSCOPE_ALL_APPLICATIONS=1) is built
with weights=None, once per module, at the smallest input size at
which its deepest maps still hold its kernels (see test_minimum_input_size_is_reported for 32x32), and
diagnosed on probe inputs drawn where its own preprocessing reads them (MobileNetV3 and EfficientNetV2 start
with a Rescaling, ConvNeXt with a Normalization by ImageNet's pixel statistics).
Expected info findings are part of the record: ResNet puts a bias in front of every BatchNormalization.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import keras
import numpy as np
import pytest

from layerscope.service import model_diagnosis
from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.synthetic_inputs import preprocessing, probe_inputs
from layerscope.service.domain.description import ModelDescription
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.models import ModelInfo
from layerscope.service.models.describe import describe
from layerscope.service.models.registry import LoadedModel
from tests.diagnosis import zoo
from tests.diagnosis.harness import evidence_for, training_evidence_for

APPLICATIONS = sorted(name for name in dir(keras.applications) if name[:1].isupper())
"""Every model keras.applications offers (40 in Keras 3.15): a new one is covered as soon as Keras adds it."""

LARGER_TWINS = {
    "ConvNeXtSmall": "ConvNeXtTiny",
    "ConvNeXtBase": "ConvNeXtTiny",
    "ConvNeXtLarge": "ConvNeXtTiny",
    "ConvNeXtXLarge": "ConvNeXtTiny",
    "EfficientNetB7": "EfficientNetB6",
    "EfficientNetV2L": "EfficientNetV2M",
    "NASNetLarge": "NASNetMobile",
}
"""Wider or deeper copies of a smaller application, built of the same layers in the same arrangement: they
cost 2.5 of the suite's 20 minutes on 2 cores and run with LAYERSCOPE_ALL_APPLICATIONS=1 (as every model's
gradients do)."""

SIDES: tuple[tuple[str, int], ...] = (
    # The input side by family, first match wins; 64 for the rest. 64 keeps ResNet/DenseNet/MobileNetV2's last
    # maps at 2x2, where a 3x3 kernel still trains every tap. EfficientNet and MobileNetV3 have 5x5 depthwise
    # kernels at 1/32 resolution, so they need 96; NASNet has 7x7 separable ones there (128); Inception's last
    # mixed blocks run 3x3 and 1x3 kernels on maps that reach 1x1 below 139. ConvNeXt has 7x7 depthwise kernels at
    # 1/32 resolution (at 64 they run over a 2x2 map and rightly fire feature-map-too-small), so 128 keeps its last
    # maps at 4x4; it also holds Dense pointwise projections on rank-4 maps and LayerNormalization between linear
    # layers: healthy on purpose.
    ("ConvNeXt", 128),
    ("EfficientNet", 96),
    ("MobileNetV3", 96),
    ("NASNet", 128),
    ("Inception", 139),
    ("Xception", 96),
)
CLASSES = {"ConvNeXt": 10}
"""Classes of the top, by family; 1000 (ImageNet's) for the rest."""

EXPECTED_INFO: dict[str, set[str]] = {
    "ResNet50": {"bias-before-batchnorm"},  # keras.applications' ResNets keep conv biases before BN
    "ResNet101": {"bias-before-batchnorm"},
    "ResNet152": {"bias-before-batchnorm"},
    "MobileNetV3Small": {"cnn-design-smell"},  # filters shrink from 96 to 48 as its maps shrink
}


def family(name: str, table: tuple[tuple[str, int], ...] | dict[str, int], default: int) -> int:
    pairs = table.items() if isinstance(table, dict) else table
    return next((value for prefix, value in pairs if name.startswith(prefix)), default)


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


@pytest.fixture(scope="module", params=APPLICATIONS)
def application(request: pytest.FixtureRequest) -> Iterator[tuple[str, keras.Model, ModelDescription]]:
    name = request.param
    if name in LARGER_TWINS and not os.environ.get("LAYERSCOPE_ALL_APPLICATIONS"):
        pytest.skip(f"{name}: its layers are {LARGER_TWINS[name]}'s; run with LAYERSCOPE_ALL_APPLICATIONS=1")
    side, classes = family(name, SIDES, 64), family(name, CLASSES, 1000)
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(side, side, 3), classes=classes)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    yield name, model, describe(model, model.get_compile_config())
    keras.backend.clear_session()


def test_every_application_is_covered() -> None:
    assert len(APPLICATIONS) >= 40 and {"MobileNetV3Small", "EfficientNetV2L", "NASNetLarge"} <= set(APPLICATIONS)
    assert set(EXPECTED_INFO) <= set(APPLICATIONS)
    assert set(LARGER_TWINS) | set(LARGER_TWINS.values()) <= set(APPLICATIONS)
    assert not set(LARGER_TWINS.values()) & set(LARGER_TWINS), "every twin left out has its smaller one run"


def test_applications_are_clean_statically_and_on_probes(
    application: tuple[str, keras.Model, ModelDescription],
) -> None:
    """As `layerscope audit` diagnoses them: the capture engine over probe inputs (exact statistics)."""
    name, model, description = application
    assert loud(Diagnoser().diagnose(description)) == []
    engine = CaptureEngine(model, compile_config=description.compile_config)
    info = ModelInfo(name, 1, "", description.parameters, tuple(p for p, _ in engine.layers), inputs=engine.inputs)
    diagnosis = model_diagnosis.diagnose(LoadedModel(info, engine, description), Diagnoser(), None)
    assert "drawn in the raw range" in diagnosis.inputs_used or not preprocessing(description)
    assert loud(diagnosis.findings) == []
    assert {f.code for f in diagnosis.findings} == EXPECTED_INFO.get(name, set()), [
        f.message for f in diagnosis.findings
    ]


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
    # Below the first loss at some step: each step's loss is measured in training mode, where mlp_relu's dropout
    # makes it noisy (what loss-not-decreasing judges too; the masks are the request's own, drawn alike each run).
    assert min(s.loss for s in steps[1:]) < steps[0].loss


GRADIENT_APPLICATIONS = {"ResNet50", "MobileNetV2", "MobileNetV3Small"}
"""The applications whose gradients run in every suite (the deepest plain and residual stacks, and one with
squeeze-and-excite blocks and its own Rescaling); the others add minutes on two cores and run with
LAYERSCOPE_ALL_APPLICATIONS=1."""


def test_applications_are_clean_with_targets(application: tuple[str, keras.Model, ModelDescription]) -> None:
    """Gradients of the loss on one-hot labels (no probe: tracing a training step of each application
    costs 15-25 s on two cores; the tutorial models above and the corpus run the probe)."""
    name, model, description = application
    if name not in GRADIENT_APPLICATIONS and not os.environ.get("LAYERSCOPE_ALL_APPLICATIONS"):
        pytest.skip(f"{name}: gradients checked with LAYERSCOPE_ALL_APPLICATIONS=1")
    inputs = probe_inputs(description.inputs, batch=8, description=description).arrays  # where it reads them
    _, labels = targets_for(model, description, "categorical_crossentropy", batch=8)
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
