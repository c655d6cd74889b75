"""The health gauges on /metrics and the dead-units / saturated-units findings measure a layer one way:
a dashboard and an audit never disagree about the same layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from layerscope.service.diagnosis.diagnoser import Diagnoser
from layerscope.service.diagnosis.rules.saturated_units import SaturatedUnits
from layerscope.service.domain.model_health import LayerHealth
from layerscope.service.model_diagnosis import Diagnosis, activation_summaries, diagnose
from layerscope.service.model_health import HealthGauges
from layerscope.service.models.registry import open_model
from tests.support import models

L = keras.layers


def mixed_health() -> keras.Model:
    """Side by side: a dead ReLU, a leaky ReLU fed only negatives, a saturated and a calm tanh."""
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    dead = L.Dense(8, activation="relu", name="dead")(x)
    leaky = L.ReLU(negative_slope=0.1, name="leaky")(L.Dense(8, name="pre_leaky")(x))
    saturated = L.Dense(8, activation="tanh", name="saturated")(x)
    calm = L.Dense(8, activation="tanh", name="calm")(x)
    merged = L.Concatenate(name="merged")([dead, leaky, saturated, calm])
    model = keras.Model(x, L.Dense(1, activation="sigmoid", name="out")(merged), name="mixed_health")
    for name in ("dead", "pre_leaky"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, bias - 100.0])  # every pre-activation is negative
    kernel, bias = model.get_layer("saturated").get_weights()
    model.get_layer("saturated").set_weights([kernel * 100.0, bias])
    kernel, bias = model.get_layer("calm").get_weights()
    model.get_layer("calm").set_weights([kernel * 0.01, bias])
    return model


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Diagnosis, dict[str, LayerHealth], Diagnoser]:
    path = models.save(mixed_health(), tmp_path_factory.mktemp("health"))
    diagnoser = Diagnoser()
    model = open_model(path, "mixed_health", 1)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    diagnosis = diagnose(model, diagnoser, {"x": x})
    gauges = HealthGauges.of(diagnoser).layers(model.description, activation_summaries(diagnosis.capture))
    return diagnosis, {g.layer: g for g in gauges}, diagnoser


def flagged(diagnosis: Diagnosis, code: str) -> dict[str, float]:
    key = {"dead-units": "dead_fraction", "saturated-units": "saturated_fraction"}[code]
    return {f.layers[0]: f.evidence[key] for f in diagnosis.findings if f.code == code}


def test_a_layer_is_flagged_exactly_where_its_gauge_passes_the_rule_threshold(
    measured: tuple[Diagnosis, dict[str, LayerHealth], Diagnoser],
) -> None:
    diagnosis, gauges, diagnoser = measured
    gauge = HealthGauges.of(diagnoser)
    hidden = {"dead", "pre_leaky", "leaky", "saturated", "calm"}
    dead = {name for name in hidden if (gauges[name].dead_unit_fraction or 0.0) > gauge.dead.max_dead_fraction}
    saturated = {
        name for name in hidden if (gauges[name].saturated_fraction or 0.0) > gauge.saturated.max_saturated_fraction
    }
    assert dead == set(flagged(diagnosis, "dead-units")) == {"dead"}
    assert saturated == set(flagged(diagnosis, "saturated-units")) == {"saturated"}


def test_gauge_and_finding_report_the_same_number(
    measured: tuple[Diagnosis, dict[str, LayerHealth], Diagnoser],
) -> None:
    diagnosis, gauges, _ = measured
    assert flagged(diagnosis, "dead-units") == {"dead": gauges["dead"].dead_unit_fraction} == {"dead": 1.0}
    assert flagged(diagnosis, "saturated-units") == {"saturated": gauges["saturated"].saturated_fraction}
    assert gauges["calm"].saturated_fraction == 0.0


def test_a_leaky_relu_that_never_turns_positive_is_not_dead_in_the_gauge_either(
    measured: tuple[Diagnosis, dict[str, LayerHealth], Diagnoser],
) -> None:
    """Below zero a leaky ReLU still passes a gradient: neither the finding nor the gauge calls it dead (the
    rule does not judge it, so no dead-unit series is exported for it at all)."""
    diagnosis, gauges, _ = measured
    assert gauges["leaky"].activation_rms > 0 and "leaky" not in flagged(diagnosis, "dead-units")
    assert gauges["leaky"].dead_unit_fraction is None


def test_the_gauges_follow_the_thresholds_the_diagnoser_was_built_with() -> None:
    wide = HealthGauges.of(Diagnoser([SaturatedUnits(margin=0.5)]))
    assert wide.saturated.margin == 0.5
    assert HealthGauges.of(Diagnoser([])).saturated.margin == SaturatedUnits().margin
