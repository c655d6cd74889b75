"""Comparing runs: per-layer deltas, a histogram distance that means something, findings that came or went."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from layerscope.service.compare import compare, histogram_distance
from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunRecord
from layerscope.service.domain.summary import summarize


def run(run_id: str, activations: dict[str, np.ndarray], findings: tuple[Finding, ...] = ()) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        model_name="m",
        model_version=1,
        model_sha256="0" * 64,
        kind="capture",
        created_at=datetime.now(UTC),
        batch_size=8,
        inputs="",
        device="CPU",
        duration_seconds=0.1,
        summaries=tuple(LayerSummaryRecord(name, "activation", summarize(a)) for name, a in activations.items()),
        findings=findings,
    )


def dead(layer: str) -> Finding:
    return Finding("dead-units", Severity.WARNING, (layer,), "m", "s")


def test_histogram_distance_is_zero_for_the_same_data_and_one_for_disjoint_data() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    a = summarize(rng.normal(size=1000))
    assert histogram_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert histogram_distance(summarize(rng.uniform(0, 1, 500)), summarize(rng.uniform(5, 6, 500))) == pytest.approx(1)
    shifted = histogram_distance(a, summarize(rng.normal(0.5, 1, size=1000)))
    assert 0.1 < shifted < 0.35


def test_a_layer_that_died_between_two_runs_shows_in_the_deltas_and_the_findings() -> None:
    rng = np.random.default_rng(0)  # each test its own data, whatever ran before
    healthy = np.maximum(rng.normal(size=(8, 4)), 0)
    died = np.zeros((8, 4))
    a = run("a", {"hidden": healthy, "out": healthy})
    b = run("b", {"hidden": died, "out": healthy, "extra": healthy}, findings=(dead("hidden"),))
    result = compare(a, b)
    change = {c.layer: c for c in result.changes}
    assert change["hidden"].dead_unit_fraction_delta == pytest.approx(1.0)
    assert change["hidden"].zero_fraction_delta == pytest.approx(1.0 - summarize(healthy).zero_fraction)
    # Total variation: the mass that moved. Every non-zero value moved to 0, less the small ones that already
    # shared the first bin with the zeros.
    moved = 1.0 - summarize(healthy).zero_fraction
    assert moved - 0.1 < change["hidden"].histogram_distance <= moved + 1e-9
    assert change["out"].histogram_distance == pytest.approx(0.0, abs=1e-12)
    assert result.only_in_b == ("extra/activation",) and result.only_in_a == ()
    assert [f.layers for f in result.new_findings] == [("hidden",)] and result.resolved_findings == ()
    assert compare(b, a).resolved_findings == b.findings
