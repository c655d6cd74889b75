"""The audit's output at model-zoo size: the table folds a long layer list as the HTML does and shows the fix,
the JSON document has totals and the tool's version (fields added to `layerscope.audit/v1`, none renamed), the
HTML counts in words ("1 model", "2 errors"), and --help shows no `<bool>` on plain flags."""

from __future__ import annotations

import io
import re
from importlib.metadata import version

import pytest
from rich.console import Console
from typer.testing import CliRunner

from layerscope.cli.app import app
from layerscope.cli.audit import html, render
from layerscope.client import Finding
from layerscope.service.audit import report

LAYERS = tuple(f"conv{i}_block_relu" for i in range(106))  # ResNet50's ReLUs, say


def resnet(*severities: str) -> report.Entry:
    findings = [
        Finding("dead-units", s, LAYERS, f"[{s}] units never activate", "Lower the learning rate.", {})
        for s in severities
    ]
    return report.entry("zoo/resnet50.keras", "ab" * 32, 25_636_712, findings, [], 1.5)


def table_text(doc: report.Document) -> str:
    out = io.StringIO()
    render.table(doc, Console(file=out, width=160, color_system=None))
    return out.getvalue()


def test_the_table_folds_a_long_layer_list_and_shows_the_fix() -> None:
    text = table_text(report.document([resnet("warning")]))
    assert "conv0_block_relu" in text and "conv7_block_relu" in text
    assert "conv50_block_relu" not in text and "conv105_block_relu" not in text
    assert "and 98 more layers" in re.sub(r"[│\s]+", " ", text)
    assert "Fix: Lower the learning rate." in re.sub(r"[│\s]+", " ", text)
    assert "[warning] units never activate" in text  # brackets in a message are text, not markup
    assert len(text.splitlines()) < 15


def test_the_json_document_has_totals_and_the_tool_version_beside_its_fields() -> None:
    clean = report.entry("zoo/mlp.keras", "cd" * 32, 10, [], [], 0.2)
    failed = report.failed("zoo/broken.keras", "", "invalid-argument", "not a zip", 0.0)
    doc = report.document([resnet("error", "warning", "warning"), clean, failed])
    assert doc["schema"] == "layerscope.audit/v1" and doc["models"][0]["source"] == "zoo/resnet50.keras"
    assert doc["tool"] == {"name": "layerscope", "version": version("layerscope")}
    assert doc["totals"] == {
        "models": 3,
        "audited": 2,
        "not_audited": 1,
        "clean": 1,
        "findings": {"error": 1, "warning": 2, "info": 0},
    }
    merged = report.merge([("a.json", report.document([clean])), ("b.json", report.document([failed]))])
    assert merged["totals"]["models"] == 2 and merged["totals"]["not_audited"] == 1 and "tool" in merged


@pytest.mark.parametrize(
    ("models", "headline"),
    [
        ([("error",)], "1 model · 1 audited · 1 error · 0 warnings · 0 info"),
        ([("error", "error"), ("warning",)], "2 models · 2 audited · 2 errors · 1 warning · 0 info"),
    ],
)
def test_html_counts_in_words(models: list[tuple[str, ...]], headline: str) -> None:
    entries = [report.entry(f"m{i}.keras", "ab" * 32, 1, [Finding("x", s, ("d",), "m", "s", {}) for s in sev], [], 0)
               for i, sev in enumerate(models)]  # fmt: skip
    assert html.headline(entries) == headline
    page = html.to_html(report.document([resnet(*["warning"] * 4)]))
    assert "1 more dead-units finding<" in page and "and 98 more layers<" in page


@pytest.mark.parametrize("command", [[], ["audit"], ["audit", "merge"], ["serve"], ["runs"], ["compare"], ["monitor"]])
def test_help_shows_no_type_on_plain_flags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if command == ["serve"]:
        assert "<int>" in result.output  # options that take a value keep their type
