"""The training rules on a probe given as data (no TensorFlow): a diverging probe is said once, by
exploding-gradients, and loss-not-decreasing reports where the probe ended."""

from __future__ import annotations

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.evidence import RuntimeEvidence, TrainingEvidence
from layerscope.service.diagnosis.rules import LossNotDecreasing
from layerscope.service.domain.description import InputSpec, LayerInfo, ModelDescription
from layerscope.service.domain.training import LossSpec, ProbeResult, ProbeStep

HIDDEN = LayerInfo("hidden", "Dense", {"activation": "relu"}, ((None, 4),), ((None, 8),), (), 40)
OUT = LayerInfo("out", "Dense", {"activation": "softmax"}, ((None, 8),), ((None, 3),), ("hidden",), 27)
MODEL = ModelDescription("mlp", (HIDDEN, OUT), (InputSpec("x", (None, 4), "float32"),), ("out",), 67)


def probe(losses: list[float], norms: list[float] | None = None) -> ProbeResult:
    norms = norms or [1.0] * len(losses)
    steps = tuple(
        ProbeStep(i, loss, {"hidden": n, "out": n}) for i, (loss, n) in enumerate(zip(losses, norms, strict=True))
    )
    return ProbeResult(steps, "Adam(learning_rate=10)", "sparse_categorical_crossentropy", ("hidden", "out"))


def evidence(result: ProbeResult) -> RuntimeEvidence:
    training = TrainingEvidence({}, {}, (LossSpec("sparse_categorical_crossentropy"),), result)
    return RuntimeEvidence({}, {}, {}, caller_inputs=True, training=training)


def test_a_diverging_probe_is_one_finding_exploding_gradients() -> None:
    """A learning rate of 10: the loss jumps 1e5x and settles far above where it started. The loss does not go
    down, but that is the divergence, said once, with its own remedy (lower the learning rate)."""
    diverging = probe([2.3, 181311.5, 24835.0, 23.4, 19.1, 18.1], [1.0, 5e4, 3e3, 50.0, 20.0, 15.0])
    findings = Diagnoser().diagnose(MODEL, evidence(diverging))
    assert [f.code for f in findings] == ["exploding-gradients"]
    assert "Lower the learning rate" in findings[0].suggestion
    assert "not far too small" not in findings[0].suggestion


def test_loss_not_decreasing_reports_the_last_step_and_a_rising_loss_asks_for_a_lower_rate() -> None:
    # Best later loss 1.999 (0.05% down, below the 0.1% bound); the probe ended at 3.0, 50% up.
    findings = LossNotDecreasing().check(MODEL, evidence(probe([2.0, 1.999, 2.5, 3.0])))
    assert len(findings) == 1
    assert "went from 2 to 3 (best 1.999)" in findings[0].message
    assert "received -50.00%." in findings[0].message
    assert findings[0].evidence["relative_decrease"] == -0.5
    assert "lower the learning rate" in findings[0].suggestion
    assert "not far too small" not in findings[0].suggestion
    flat = LossNotDecreasing().check(MODEL, evidence(probe([2.0, 2.0, 2.0, 2.0])))
    assert "received 0.00%" in flat[0].message and "not far too small" in flat[0].suggestion
    assert LossNotDecreasing().check(MODEL, evidence(probe([2.0, 1.5, 2.1, 2.2]))) == []  # it learned at step 1
