"""Runs for the store tests: deterministic, so the same arguments build the same payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunRecord
from layerscope.service.domain.summary import summarize

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def make_run(
    i: int,
    *,
    model: str = "digits",
    version: int = 1,
    codes: tuple[str, ...] = (),
    layers: int = 3,
    created_at: datetime | None = None,
    seed: int = 0,
    run_id: str | None = None,
) -> RunRecord:
    """Run `i` of `model`, created `i` minutes after T0, with `layers` x (activation, kernel) summaries."""
    rng = np.random.default_rng([seed, i])
    return RunRecord(
        run_id=run_id or f"{model}-{i}",
        model_name=model,
        model_version=version,
        model_sha256=f"{version:064d}",
        kind="diagnose" if codes else "capture",
        created_at=created_at or T0 + timedelta(minutes=i),
        batch_size=8,
        inputs="x: float32[8, 4]",
        device="/device:CPU:0",
        duration_seconds=0.25,
        summaries=tuple(
            LayerSummaryRecord(f"layer_{j}", kind, summarize(rng.normal(size=(8, 4)), per_unit=kind == "activation"))
            for j in range(layers)
            for kind in ("activation", "kernel")
        ),
        findings=tuple(
            Finding(
                code,
                Severity.ERROR if code == "non-finite" else Severity.WARNING,
                ("layer_1", "layer_2"),
                f"Dense 'layer_1' {code}: expected less than 0.5, received 0.9.",
                "Use He initialisation.",
                {"fraction": 0.9, "units": 3, "thresholds": {"max_dead_fraction": 0.5}, "layers": ["layer_1"]},
            )
            for code in codes
        ),
    )
