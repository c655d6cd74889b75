"""deploy/prometheus: the rules are valid, their unit tests pass, and every alert is tested both ways."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import ALERTS, JOB, PROMETHEUS, RULE_TESTS, load_yaml

SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"service", "model"}
# Alerts about what callers' ad-hoc captures, diagnoses and audits found: their own tests, which must never
# notify anyone (issue #22).
AD_HOC = {"LayerscopeNewErrorFindings"}


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120, check=False)


def rules(yaml: ModuleType) -> list[dict[str, Any]]:
    document = load_yaml(yaml, ALERTS)
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts(yaml: ModuleType) -> list[dict[str, Any]]:
    return [rule for rule in rules(yaml) if "alert" in rule]


@pytest.mark.slow
def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_promtool_rule_unit_tests(promtool: str) -> None:
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests/"
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool prints SUCCESS once per file; a file that it silently skipped would not.
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


@pytest.mark.slow
def test_promtool_check_config(promtool: str) -> None:
    """The compose stack's config parses and its rule_files (alerts.yml beside it) resolve."""
    result = run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_severity_category_and_templated_annotations(yaml: ModuleType) -> None:
    found = alerts(yaml)
    assert found, "alerts.yml defines no alerts"
    for alert in found:
        name = alert["alert"]
        labels = alert.get("labels", {})
        annotations = alert.get("annotations", {})
        assert labels.get("severity") in SEVERITIES, f"{name}: severity must be one of {sorted(SEVERITIES)}"
        assert labels.get("category") in CATEGORIES, f"{name}: category must be one of {sorted(CATEGORIES)}"
        assert {"summary", "description"} <= annotations.keys(), f"{name}: needs summary and description"
        assert any("{{" in text for text in annotations.values()), f"{name}: annotations should use label templates"


def test_model_alerts_never_page_and_ad_hoc_results_notify_nobody(yaml: ModuleType) -> None:
    by_name = {alert["alert"]: alert["labels"] for alert in alerts(yaml)}
    for name, labels in by_name.items():
        if labels["category"] == "model":
            assert labels["severity"] != "critical", f"{name}: model alerts must not page the service's on-call"
        if labels["severity"] == "info":
            assert name in AD_HOC, f"{name}: info is for callers' ad-hoc results only"
    for name in AD_HOC:
        assert by_name[name]["severity"] == "info", f"{name} reports callers' own tests: it must notify nobody"


def test_the_readme_alert_table_lists_every_alert_with_its_severity(yaml: ModuleType) -> None:
    """deploy/README.md's table is what an operator reads when an alert arrives: every alert has its row."""
    readme = (PROMETHEUS.parent / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| Layerscope") and len(cells) == 3:
            rows[cells[0]] = cells[1]
    assert rows == {alert["alert"]: alert["labels"]["severity"] for alert in alerts(yaml)}


def test_alert_names_are_unique(yaml: ModuleType) -> None:
    names = [alert["alert"] for alert in alerts(yaml)]
    assert len(names) == len(set(names))


def test_required_alerts_exist(yaml: ModuleType) -> None:
    by_name = {alert["alert"]: alert["expr"] for alert in alerts(yaml)}
    wanted = {
        "LayerscopeDown": f'up{{job="{JOB}"}}',
        "LayerscopeHighErrorRatio": "server_errors",
        "LayerscopeHighLatency": "p95",
        "LayerscopeSpoolGrowing": "deriv(layerscope_spool_depth",
        "LayerscopeModelNonFinite": "layerscope_layer_nonfinite_values",
        "LayerscopeDeadUnitsJump": "offset 1h",
        "LayerscopeNewErrorFindings": 'layerscope_findings_total{severity="error"}',
        "LayerscopeLayerDrifting": "min_over_time(layerscope_layer_drifting[10m])",
        "LayerscopeLiveNonFinite": "increase(layerscope_monitor_nonfinite_samples_total[15m])",
        "LayerscopeDeadUnitsAboveReference": "layerscope_layer_reference_dead_unit_fraction",
        "LayerscopeMonitorNotSampling": 'method=~"Predict|ModelInfer"',
        "LayerscopeMonitorSkipping": "layerscope_monitor_skipped_samples_total",
    }
    for name, fragment in wanted.items():
        assert name in by_name, f"missing alert {name}"
        assert fragment in by_name[name], f"{name} should use {fragment!r}"


def test_client_errors_do_not_count_as_server_errors(yaml: ModuleType) -> None:
    """The error ratio is an allow-list of server faults; client outcomes must never be in it."""
    record = next(rule for rule in rules(yaml) if rule.get("record", "").endswith("server_errors:ratio_rate5m"))
    codes = server_error_codes(record["expr"])
    assert codes == {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"}
    client = {"OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "CANCELLED"}
    assert not codes & client


def server_error_codes(expr: str) -> set[str]:
    start = expr.index('code=~"') + len('code=~"')
    return set(expr[start : expr.index('"', start)].split("|"))


def test_every_alert_is_tested_firing_and_silent(yaml: ModuleType) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        document = load_yaml(yaml, path)
        assert document["rule_files"] == ["../alerts.yml"], f"{path.name} must test deploy/prometheus/alerts.yml"
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (fires if expected else silent).add(check["alertname"])
                for alert in expected:
                    # Exact labels and annotations: a test with only some of them would let a broken
                    # template through.
                    assert "severity" in alert["exp_labels"], f"{path.name}: {check['alertname']} exp_labels"
                    assert {"summary", "description"} <= alert["exp_annotations"].keys()
    names = {alert["alert"] for alert in alerts(yaml)}
    assert names - fires == set(), f"alerts never seen firing in a promtool test: {sorted(names - fires)}"
    assert names - silent == set(), f"alerts never seen silent in a promtool test: {sorted(names - silent)}"


@pytest.mark.slow
def test_alert_tests_catch_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """Mutation check: the promtool tests fail when a threshold in alerts.yml is changed."""
    prometheus = tmp_path / "prometheus"
    (prometheus / "tests").mkdir(parents=True)
    original = ALERTS.read_text(encoding="utf-8")
    mutated = original.replace("layerscope_layer_nonfinite_values) > 0", "layerscope_layer_nonfinite_values) > 100")
    assert mutated != original, "mutation target not found in alerts.yml; update this test"
    (prometheus / "alerts.yml").write_text(mutated, encoding="utf-8")
    for path in RULE_TESTS:
        (prometheus / "tests" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    result = run(promtool, "test", "rules", *sorted((prometheus / "tests").glob("*.yml")))
    assert result.returncode != 0, "the promtool tests still pass with a broken LayerscopeModelNonFinite"


@pytest.mark.parametrize("path", [ALERTS, *RULE_TESTS, PROMETHEUS / "prometheus.yml"], ids=lambda p: p.name)
def test_yaml_files_parse(yaml: ModuleType, path: Path) -> None:
    assert load_yaml(yaml, path)
