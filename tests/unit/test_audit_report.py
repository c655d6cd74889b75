"""The `layerscope.audit/v1` document: one shape for local and server audits, merged from shards, scored
into the exit status; and `merge` as a subcommand of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layerscope.cli.app import app
from layerscope.client import Finding
from layerscope.service.audit import report


def finding(severity: str) -> Finding:
    return Finding("dead-units", severity, ("dense",), "message", "suggestion", {"units": 4})


def model(source: str, *severities: str) -> report.Entry:
    return report.entry(source, "ab" * 32, 10, [finding(s) for s in severities], [], 0.5)


def test_an_audited_and_a_failed_entry_have_the_same_keys() -> None:
    failed = report.failed("b.keras", "", "invalid-argument", "Expected a readable .keras file", 0.1)
    assert (
        sorted(model("a.keras"))
        == sorted(failed)
        == sorted(["source", "sha256", "parameters", "error", "findings", "layers", "seconds"])
    )
    assert model("a.keras", "warning")["findings"][0] == {
        "code": "dead-units",
        "severity": "warning",
        "layers": ["dense"],
        "message": "message",
        "suggestion": "suggestion",
        "evidence": {"units": 4},
    }


def test_exit_status_is_2_for_a_model_not_audited_else_1_at_or_above_fail_on() -> None:
    warned = report.document([model("a.keras", "warning")])
    assert [report.exit_status(warned, f) for f in ("error", "warning", "never")] == [0, 1, 0]
    broken = report.document([model("a.keras"), report.failed("b.keras", "", "internal", "boom", 0.0)])
    assert report.exit_status(broken, "never") == 2


def test_shards_merge_sorted_by_source_and_a_model_in_two_shards_is_refused() -> None:
    first, second = report.document([model("b.keras")]), report.document([model("a.keras", "error")])
    merged = report.merge([("0.json", first), ("1.json", second)])
    assert merged["schema"] == report.SCHEMA and [m["source"] for m in merged["models"]] == ["a.keras", "b.keras"]
    with pytest.raises(report.MergeRefused, match=r"b\.keras appears in two shard reports; expected each once"):
        report.merge([("0.json", first), ("1.json", first)])


def test_a_report_of_another_schema_is_refused_naming_file_and_schema() -> None:
    with pytest.raises(report.MergeRefused, match=r"expected schema layerscope\.audit/v1 in old\.json; received .v0."):
        report.merge([("old.json", {"schema": "v0", "models": []})])


@pytest.mark.slow
def test_merge_is_a_subcommand_and_a_model_file_called_merge_is_still_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["audit", "merge", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Join shard reports" in help_text and "--output" in help_text
    monkeypatch.chdir(tmp_path)
    Path("merge").write_bytes(b"not a zip")
    result = runner.invoke(app, ["audit", "./merge", "--format", "json", "-q"])
    assert result.exit_code == 2  # audited, and it is not a model
    (entry,) = json.loads(result.stdout)["models"]
    assert entry["source"] == "merge" and entry["error"]["code"] == "invalid-argument"
