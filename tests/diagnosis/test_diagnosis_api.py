"""The rule machinery: validation, configuration round trips, the diagnoser, the catalog, probes."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from layerscope.service.capture.engine import CaptureEngine
from layerscope.service.diagnosis.catalog import CATALOG, explain
from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.evidence import RuntimeEvidence
from layerscope.service.diagnosis.rules import RULE_CLASSES, Rule
from layerscope.service.diagnosis.rules.dead_units import DeadUnits
from layerscope.service.diagnosis.rules.dropout_placement import DropoutPlacement
from layerscope.service.diagnosis.rules.exploding_activations import ExplodingActivations
from layerscope.service.diagnosis.rules.feature_map_too_small import FeatureMapTooSmall
from layerscope.service.diagnosis.rules.outputs import parse_loss
from layerscope.service.diagnosis.synthetic_inputs import MAX_PROBE_INTEGER, probe_inputs
from layerscope.service.domain.description import InputSpec
from layerscope.service.domain.findings import Severity
from layerscope.service.domain.selection import Selection
from layerscope.service.domain.summary import summarize
from layerscope.service.models.describe import describe
from tests.diagnosis import zoo
from tests.diagnosis.harness import evidence_for

DIAGNOSIS = pathlib.Path(__file__).parents[2] / "service" / "layerscope" / "service" / "diagnosis"
DESIGN_CODES = {
    "softmax-single-unit", "output-loss-mismatch", "dense-on-spatial", "image-without-conv", "conv-after-flatten",
    "parameter-explosion", "missing-nonlinearity", "redundant-activation", "saturating-deep-stack", "constant-init",
    "bias-before-batchnorm", "dropout-placement", "feature-map-too-small", "cnn-design-smell", "non-finite",
    "dead-units", "saturated-units", "exploding-activations", "vanishing-activations", "constant-output",
    "unscaled-input", "dead-weights", "vanishing-gradients", "exploding-gradients", "loss-not-decreasing",
    "units-die-in-training", "output-range-mismatch", "bounded-output-regression", "target-loss-mismatch",
}  # fmt: skip


def test_one_rule_per_design_code() -> None:
    assert sorted(cls.code for cls in RULE_CLASSES) == sorted(DESIGN_CODES)


def test_readme_counts_the_codes_of_the_catalog() -> None:
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    assert f"one pure rule class per finding code ({len(RULE_CLASSES)} codes;" in readme


@pytest.mark.parametrize("cls", RULE_CLASSES, ids=lambda c: c.code)
def test_config_round_trips_and_docstring_names_symptom_and_remedy(cls: type[Rule]) -> None:
    rule = cls()
    assert type(rule).from_config(rule.get_config()).get_config() == rule.get_config()
    doc = cls.__doc__ or ""
    assert "Symptom:" in doc and "Remedy:" in doc


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DeadUnits(max_dead_fraction=1.5), r"Expected max_dead_fraction in \[0, 1\]; received 1.5"),
        (lambda: DeadUnits(min_units=0), r"Expected min_units to be an integer >= 1; received 0"),
        (lambda: DropoutPlacement(max_rate=0.0), r"Expected max_rate in \(0, 1\]; received 0.0"),
        (lambda: ExplodingActivations(max_growth=0.5), r"Expected max_growth >= 1.0; received 0.5"),
        (lambda: FeatureMapTooSmall(strict="yes"), r"Expected strict to be a bool; received 'yes'"),  # type: ignore[arg-type]
    ],
)
def test_thresholds_are_validated(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_thresholds_change_what_fires() -> None:
    description = describe(zoo.vgg_style_end_on_two_pixels())
    assert FeatureMapTooSmall().check(description, None) == []
    strict = FeatureMapTooSmall(strict=True).check(description, None)
    assert strict[0].layers == ("conv2",) and strict[0].evidence["rule"] == {"strict": True}


def test_diagnoser_runs_static_rules_without_evidence_and_sorts_by_severity() -> None:
    model = zoo.mlp_dead_relu()
    description = describe(model)
    static = Diagnoser().diagnose(description)
    assert {f.code for f in static} == set()  # dead units only show at run time
    both = Diagnoser().diagnose(describe(zoo.mlp_dropout_before_bn()))
    assert both and all(f.code == "dropout-placement" for f in both)
    findings = Diagnoser().diagnose(description, evidence_for(model, description))
    assert [f.code for f in findings][:2] == ["constant-output", "dead-units"]
    ranks = [f.severity.rank for f in findings]
    assert ranks == sorted(ranks, reverse=True)


def test_diagnoser_refuses_two_rules_for_one_code() -> None:
    with pytest.raises(ValueError, match="Expected one rule per finding code"):
        Diagnoser([DeadUnits(), DeadUnits(max_dead_fraction=0.9)])


def test_diagnoser_with_chosen_rules_only() -> None:
    description = describe(zoo.mlp_heavy_dropout())
    assert Diagnoser([DeadUnits()]).diagnose(description) == []


def test_catalog_explains_every_code() -> None:
    assert set(CATALOG) == DESIGN_CODES
    for code, entry in CATALOG.items():
        assert entry.summary and entry.why and entry.fix, code
    text = explain("dense-on-spatial")
    assert text.startswith("dense-on-spatial (error, static rule)")
    assert "Flatten" in text and "Default thresholds: min_rank=3, min_image_rank=4" in text
    with pytest.raises(KeyError):
        explain("no-such-code")
    assert CATALOG["bias-before-batchnorm"].severity is Severity.INFO


def test_probes_are_seeded_mixed_and_typed() -> None:
    specs = [InputSpec("image", (None, 4, 4, 3), "float32"), InputSpec("tokens", (None, None), "int32")]
    probe = probe_inputs(specs, batch=24, seed=3)
    again = probe_inputs(specs, batch=24, seed=3)
    assert probe.description == again.description and "seed 3" in probe.description
    image, tokens = probe.arrays["image"], probe.arrays["tokens"]
    np.testing.assert_array_equal(image, again.arrays["image"])
    assert image.shape == (24, 4, 4, 3) and image.dtype == np.float32
    assert tokens.shape == (24, 32) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < MAX_PROBE_INTEGER
    assert image[8:16].min() >= 0.0 and image[8:16].max() <= 1.0  # the uniform [0, 1] rows
    assert image[:8].min() < -1.0  # the standard normal rows
    with pytest.raises(ValueError, match="Expected batch >= 3"):
        probe_inputs(specs, batch=2)


def test_probes_are_drawn_where_the_models_own_preprocessing_reads_them() -> None:
    """MobileNetV3 starts with Rescaling(1/127.5, offset=-1), ConvNeXt with a Normalization by pixel mean and
    variance: probes undo them, so the first real layer sees the distributions as drawn (not one grey image)."""
    import keras

    image = keras.Input((4, 4, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(image)
    x = keras.layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[4.0, 1.0, 0.25], name="norm")(x)
    model = keras.Model(image, keras.layers.Conv2D(2, 3, name="conv")(x))
    description = describe(model)
    plain = probe_inputs(description.inputs, batch=24)
    probe = probe_inputs(description.inputs, batch=24, description=description)
    assert "'image' drawn in the raw range its preprocessing 'rescale', 'norm' reads" in probe.description
    reached = keras.Model(image, model.get_layer("norm").output)(probe.arrays["image"])
    np.testing.assert_allclose(np.asarray(reached), plain.arrays["image"], rtol=1e-4, atol=1e-4)
    assert probe.arrays["image"][8:16].min() >= 0.0 and probe.arrays["image"][8:16].max() > 100  # raw pixels
    # A Normalization adapted from data keeps its constants in weights: the chain stops before it.
    adapted = keras.layers.Normalization(name="adapted")
    adapted.adapt(np.ones((2, 4, 4, 3), "float32"))
    other = keras.Model(image, keras.layers.Conv2D(2, 3)(adapted(keras.layers.Rescaling(1 / 255, name="r")(image))))
    other_description = describe(other)
    chain = probe_inputs(other_description.inputs, description=other_description).description
    assert "preprocessing 'r' reads" in chain


def test_parse_loss_reads_every_shape_keras_writes() -> None:
    assert parse_loss("mse") is not None and parse_loss("mse").name == "mean_squared_error"  # type: ignore[union-attr]
    serialized = {"module": "keras.losses", "class_name": "BinaryCrossentropy", "config": {"from_logits": True}}
    assert parse_loss(serialized) == parse_loss({"class_name": "BinaryCrossentropy", "config": {"from_logits": True}})
    loss = parse_loss(serialized)
    assert loss is not None and (loss.name, loss.from_logits) == ("binary_crossentropy", True)
    function = {"module": "builtins", "class_name": "function", "config": "categorical_crossentropy"}
    assert parse_loss(function) is not None and parse_loss(function).name == "categorical_crossentropy"  # type: ignore[union-attr]
    assert parse_loss(None) is None


def test_diagnosis_imports_no_framework() -> None:
    banned = {"keras", "tensorflow", "grpc", "sqlalchemy"}
    for path in DIAGNOSIS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & banned, (path, names)


def test_evidence_from_the_capture_engine_gives_the_same_findings() -> None:
    model = zoo.mlp_dead_relu()
    description = describe(model)
    engine = CaptureEngine(model)
    probe = probe_inputs(engine.inputs, batch=12)
    result = engine.capture(probe.arrays, Selection(kinds=frozenset({"activation"})))
    arrays = engine.prepare(probe.arrays)
    evidence = RuntimeEvidence(
        activations=result.summaries,
        inputs={spec.name: summarize(a) for spec, a in zip(engine.inputs, arrays, strict=True)},
        outputs=result.outputs,
        caller_inputs=False,
    )
    from_engine = Diagnoser().diagnose(description, evidence)
    from_harness = Diagnoser().diagnose(description, evidence_for(model, description, batch=12))
    assert [(f.code, f.layers) for f in from_engine] == [(f.code, f.layers) for f in from_harness]
    assert ("dead-units", ("hidden1",)) in [(f.code, f.layers) for f in from_engine]
