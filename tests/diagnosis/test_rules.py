"""Every finding code fires on its zoo models, naming the right layers, and stays silent on the near misses."""

from __future__ import annotations

import pytest

from layerscope.service.diagnosis.rules import RULE_CLASSES, Rule
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.models.describe import describe
from tests.diagnosis.harness import evidence_for, training_evidence_for
from tests.diagnosis.training_zoo import TRAINING_CASES
from tests.diagnosis.zoo import CASES as STATIC_AND_RUNTIME_CASES
from tests.diagnosis.zoo import Case

CASES = STATIC_AND_RUNTIME_CASES + TRAINING_CASES

RULES: dict[str, type[Rule]] = {cls.code: cls for cls in RULE_CLASSES}


def run_case(case: Case) -> list[Finding]:
    model = case.build()
    config = None
    if case.compile:
        model.compile(**{"optimizer": "adam", **case.compile})
        config = model.get_compile_config()
    description = describe(model, config)
    rule = RULES[case.code]()
    evidence = None
    if rule.kind == "runtime":
        evidence = evidence_for(model, description, case.inputs(model) if case.inputs else None)
    elif rule.kind == "training":
        assert case.targets is not None, case.id
        evidence = training_evidence_for(model, description, *case.targets(model))
    return rule.check(description, evidence)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_fires_on_its_models_and_is_silent_on_near_misses(case: Case) -> None:
    findings = run_case(case)
    assert [f.code for f in findings] == [case.code] * len(findings)
    # Every finding, exactly: a rule that also names a wrong layer, or adds a finding, fails here.
    received = sorted(f.layers for f in findings)
    expected = sorted([case.layers, *case.also]) if case.fires else []
    assert received == expected, (
        f"{case.code} on {case.build.__name__}: expected findings naming {expected}; "
        f"received {received}: {[f.message for f in findings]}"
    )
    assert len(findings) == case.count
    if not case.fires:
        return
    (named,) = [f for f in findings if f.layers == case.layers]
    assert case.message in named.message, named.message
    for finding in findings:
        assert finding.severity == RULES[case.code].severity
        assert "expected" in finding.message and "received" in finding.message, finding.message
        assert any(f"'{name}'" in finding.message for name in finding.layers), finding.message
        assert finding.suggestion
        assert finding.evidence["rule"] == RULES[case.code]().get_config()


def test_silent_cases_expect_no_layers_and_firing_ones_name_some() -> None:
    for case in CASES:
        if case.fires:
            assert case.layers and all(case.also), case.id
        else:
            assert not (case.layers or case.also or case.message), case.id


def test_every_code_has_two_firing_models_and_a_near_miss() -> None:
    for code in RULES:
        firing = {c.build.__name__ for c in CASES if c.code == code and c.fires}
        silent = [c for c in CASES if c.code == code and not c.fires]
        assert len(firing) >= 2, code
        assert silent, code


def test_severities_follow_the_contract() -> None:
    expected = {
        "softmax-single-unit": Severity.ERROR,
        "output-loss-mismatch": Severity.ERROR,
        "dense-on-spatial": Severity.ERROR,
        "image-without-conv": Severity.WARNING,
        "conv-after-flatten": Severity.WARNING,
        "parameter-explosion": Severity.WARNING,
        "missing-nonlinearity": Severity.WARNING,
        "redundant-activation": Severity.WARNING,
        "saturating-deep-stack": Severity.WARNING,
        "constant-init": Severity.ERROR,
        "bias-before-batchnorm": Severity.INFO,
        "dropout-placement": Severity.WARNING,
        "feature-map-too-small": Severity.ERROR,
        "cnn-design-smell": Severity.INFO,
        "non-finite": Severity.ERROR,
        "dead-units": Severity.WARNING,
        "saturated-units": Severity.WARNING,
        "exploding-activations": Severity.WARNING,
        "vanishing-activations": Severity.WARNING,
        "constant-output": Severity.ERROR,
        "unscaled-input": Severity.WARNING,
        "dead-weights": Severity.WARNING,
        "vanishing-gradients": Severity.WARNING,
        "exploding-gradients": Severity.ERROR,
        "loss-not-decreasing": Severity.WARNING,
        "units-die-in-training": Severity.WARNING,
        "output-range-mismatch": Severity.ERROR,
        "bounded-output-regression": Severity.INFO,
        "target-loss-mismatch": Severity.ERROR,
    }
    assert {code: cls.severity for code, cls in RULES.items()} == expected
    runtime = {"non-finite", "dead-units", "saturated-units", "exploding-activations", "vanishing-activations"}
    runtime |= {"constant-output", "unscaled-input", "dead-weights"}
    assert {code for code, cls in RULES.items() if cls.kind == "runtime"} == runtime
    training = {"vanishing-gradients", "exploding-gradients", "loss-not-decreasing", "units-die-in-training"}
    training |= {"output-range-mismatch", "target-loss-mismatch"}
    assert {code for code, cls in RULES.items() if cls.kind == "training"} == training
