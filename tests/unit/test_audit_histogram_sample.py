"""A sampled histogram is marked as an estimate in the audit JSON and in the HTML report."""

from __future__ import annotations

from layerscope.cli.audit import plots
from layerscope.service.audit import report
from layerscope.service.domain.summary import Summary

COUNTS = (3, 5, 0, 2)


def summary(sample: int | None) -> Summary:
    return Summary(10, 0.5, 0.2, 0.0, 1.0, 0.3, 0, 0, 0, COUNTS, (0.0, 1.0), (), histogram_sample=sample)


def test_the_audit_layer_records_the_sample_size_or_null() -> None:
    assert report.layer("d", "Dense", [None, 4], summary(10))["histogram"]["sample"] == 10
    assert report.layer("d", "Dense", [None, 4], summary(None))["histogram"]["sample"] is None


def test_the_html_histogram_says_sampled_only_when_it_is() -> None:
    sampled = plots.histogram("conv", COUNTS, (0.0, 1.0), 16384)
    exact = plots.histogram("conv", COUNTS, (0.0, 1.0), None)
    assert "sampled, n=16384" in sampled and "an estimate from a fixed sample of 16384 finite values" in sampled
    assert "sampled" not in exact and "10 finite values" in exact
