"""Every metric and label that alerts.yml and the dashboard use is one the service actually exports.

A renamed metric in telemetry.py, or a typo in a rule, would otherwise show up as an alert that can never
fire or an empty panel, long after the change. Names are compared as sample names (what Prometheus
stores): `layerscope_rpcs_total`, `layerscope_rpc_duration_seconds_bucket`, never the family name alone.
"""

from __future__ import annotations

import json
import re
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    ALERTS,
    DASHBOARD,
    TARGET_LABELS,
    exported_series,
    grouping_labels,
    load_yaml,
    metric_names,
    selector_labels,
)

_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)")


def recorded_labels(rules: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    """Labels a recording rule keeps: those in its by / on clauses."""
    return {rule["record"]: frozenset(grouping_labels(rule["expr"])) for rule in rules if "record" in rule}


def problems(expr: str, exported: dict[str, frozenset[str]], recorded: dict[str, frozenset[str]]) -> list[str]:
    """What is wrong with one expression's names; empty when all is well."""
    known = dict(exported)
    known.update(recorded)
    known["up"] = TARGET_LABELS
    found = []
    names = metric_names(expr)
    for name in sorted(names - known.keys()):
        found.append(f"unknown metric {name}")
    for metric, label in selector_labels(expr):
        if metric in known and label not in known[metric] | TARGET_LABELS:
            found.append(f"{metric} has no label {label!r} (it has {sorted(known[metric])})")
    available = TARGET_LABELS.union(*(known.get(name, frozenset()) for name in names))
    for label in sorted(grouping_labels(expr) - available):
        found.append(f"grouping label {label!r} is on none of {sorted(names)}")
    return found


def rule_list(yaml: ModuleType) -> list[dict[str, Any]]:
    return [rule for group in load_yaml(yaml, ALERTS)["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return queries


def test_alert_rules_use_exported_metrics_and_labels(yaml: ModuleType, exported: dict[str, frozenset[str]]) -> None:
    rules = rule_list(yaml)
    recorded = recorded_labels(rules)
    used: set[str] = set()
    report = []
    for rule in rules:
        used |= metric_names(rule["expr"])
        report += [f"{rule.get('alert') or rule['record']}: {p}" for p in problems(rule["expr"], exported, recorded)]
    assert not report, "\n".join(report)
    # Not vacuous: the rules do reach the service's metrics, the health collector's included.
    assert {"up", "layerscope_rpcs_total", "layerscope_layer_nonfinite_values"} <= used


def test_dashboard_uses_exported_metrics_and_labels(exported: dict[str, frozenset[str]]) -> None:
    report = []
    used: set[str] = set()
    for where, expr in dashboard_queries():
        used |= metric_names(expr)
        report += [f"{where}: {p}" for p in problems(expr, exported, {})]
        for metric, label in _LABEL_VALUES.findall(expr):
            if label not in exported.get(metric, frozenset()):
                report.append(f"{where}: label_values of {metric} by {label!r}, which it does not have")
    assert not report, "\n".join(report)
    assert {"layerscope_rpcs_total", "layerscope_layer_activation_rms", "layerscope_findings_total"} <= used


def test_every_exported_family_appears_somewhere(yaml: ModuleType, exported: dict[str, frozenset[str]]) -> None:
    """Nothing the service exports is forgotten by both the rules and the dashboard."""
    used = set().union(*(metric_names(rule["expr"]) for rule in rule_list(yaml)))
    used |= set().union(*(metric_names(expr) for _, expr in dashboard_queries()))

    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count|total)$", "", name)

    unused = {family(name) for name in exported} - {family(name) for name in used}
    # Model load time and failures are for ad-hoc queries; streamed bytes likewise, and the start-up phases and
    # each model's load time (the start-up log says them too).
    allowed = {
        "layerscope_model_load_duration_seconds",
        "layerscope_model_load_failures",
        "layerscope_streamed_tensor_bytes",
        "layerscope_start_seconds",
        "layerscope_model_load_seconds",
    }
    assert unused <= allowed, f"exported but neither alerted on nor graphed: {sorted(unused - allowed)}"


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(layerscope_rpcs[5m])", "unknown metric layerscope_rpcs"),  # the family name, not the sample
        ("layerscope_rpc_duration_seconds > 1", "unknown metric layerscope_rpc_duration_seconds"),
        ('layerscope_spool_depth{model="x"}', "has no label 'model'"),
        ("sum by (methd) (rate(layerscope_rpcs_total[5m]))", "grouping label 'methd'"),
        ("job:layerscope_nothing:rate5m > 0", "unknown metric job:layerscope_nothing:rate5m"),
    ],
)
def test_checker_catches_wrong_names(expr: str, complaint: str) -> None:
    assert any(complaint in p for p in problems(expr, exported_series(), {})), problems(expr, exported_series(), {})


def test_checker_accepts_right_names() -> None:
    expr = 'sum by (job, method, le) (rate(layerscope_rpc_duration_seconds_bucket{code="OK", instance="a"}[5m]))'
    assert problems(expr, exported_series(), {}) == []
