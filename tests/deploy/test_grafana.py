"""deploy/grafana: the dashboard is valid and provisionable, every panel queries something real."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import ALERTS, COMPOSE, DASHBOARD, DEPLOY, load_yaml, metric_names, parse_volume

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ["Service overview", "Model health", "Live traffic", "Findings", "Model workers"]
# What each row must show (sample names); a panel removed by accident fails here.
ROW_METRICS = {
    "Service overview": {
        "layerscope_rpcs_total",
        "layerscope_rpc_duration_seconds_bucket",
        "layerscope_inflight_rpcs",
        "layerscope_models_loaded",
        "layerscope_spool_depth",
        "layerscope_db_write_duration_seconds_bucket",
        "layerscope_capture_duration_seconds_bucket",
    },
    "Model health": {
        "layerscope_layer_dead_unit_fraction",
        "layerscope_layer_saturated_fraction",
        "layerscope_layer_nonfinite_values",
        "layerscope_layer_activation_rms",
        "layerscope_layer_gradient_norm",
    },
    "Live traffic": {
        "layerscope_layer_drift_score",
        "layerscope_model_first_drifting_layer",
        "layerscope_monitor_samples_total",
        "layerscope_monitor_skipped_samples_total",
        "layerscope_monitor_nonfinite_samples_total",
        "layerscope_layer_reference_dead_unit_fraction",
        "layerscope_monitor_reference_ready",
    },
    "Findings": {"layerscope_findings_total"},
    "Model workers": {
        "layerscope_worker_restarts_total",
        "layerscope_worker_resident_memory_bytes",
        "layerscope_worker_crossing_seconds_bucket",
    },
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels_by_row(dashboard: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Panels under each row, in layout order (rows are not collapsed, so their panels follow them)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    current = None
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            assert not panel.get("collapsed"), f"row {panel['title']!r}: keep rows expanded (panels at top level)"
            current = panel["title"]
            rows[current] = []
        else:
            assert current is not None, f"panel {panel['title']!r} is above the first row"
            rows[current].append(panel)
    return rows


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), "a stable uid keeps links working across imports"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    # Provisioned dashboards must not carry a database id.
    assert dashboard.get("id") is None


def test_template_variables(dashboard: dict[str, Any]) -> None:
    found = variables(dashboard)
    assert found["datasource"]["type"] == "datasource" and found["datasource"]["query"] == "prometheus"
    for name in ("model", "layer"):
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        # Models: every loaded version has layerscope_model_info, with or without traffic, monitoring or
        # findings yet (a health series would list only models with sampled traffic). Layers: every layer of
        # every sampled version has an activation RMS; the dead-unit and saturated fractions exist only for
        # the layers their rules judge, so a variable read from them would leave layers out.
        source = {"model": "layerscope_model_info", "layer": "layerscope_layer_activation_rms"}[name]
        assert query.startswith(f"label_values({source}"), query
        assert query.rstrip().endswith(f", {name})"), query
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"
    # Layers are listed for the chosen models only.
    assert "$model" in variables(dashboard)["layer"]["query"]["query"]


def test_rows_and_their_content(dashboard: dict[str, Any]) -> None:
    rows = panels_by_row(dashboard)
    assert list(rows) == ROWS
    for row, wanted in ROW_METRICS.items():
        used = set().union(*(metric_names(t["expr"]) for panel in rows[row] for t in panel["targets"]))
        assert wanted <= used, f"row {row!r} lacks {sorted(wanted - used)}"
    for panel in rows["Model health"]:
        for target in panel["targets"]:
            assert "$model" in target["expr"] and "$layer" in target["expr"], panel["title"]
    for panel in rows["Live traffic"]:
        for target in panel["targets"]:
            assert "$model" in target["expr"], panel["title"]


def test_every_panel_has_datasource_and_targets(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = set(variables(dashboard)) | {"__rate_interval", "__interval", "__range"}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel.get("datasource") == DATASOURCE, f"{title}: use the $datasource variable"
        assert panel.get("targets"), f"{title}: no queries"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refId"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, f"{title} {target['refId']}: datasource"
            assert target.get("expr", "").strip(), f"{title} {target['refId']}: empty expr"
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= defined, f"{title}: undefined variables {sorted(used - defined)}"


def test_panels_fit_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


def test_error_ratio_panel_counts_the_same_codes_as_the_alert(dashboard: dict[str, Any]) -> None:
    def codes(text: str) -> set[str]:
        match = re.search(r'code=~\\?"([A-Z_|]+)\\?"', text)
        assert match, "no code=~ matcher"
        return set(match.group(1).split("|"))

    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Server error ratio"))
    assert codes(panel["targets"][0]["expr"]) == codes(ALERTS.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_error_ratio_panel_reads_zero_on_a_healthy_server(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """With calls and no server error the panel draws 0, as the recording rule does, not "No data"; with
    errors, their share."""
    panel = next(p for p in dashboard["panels"] if p["title"].startswith("Server error ratio"))
    expr = panel["targets"][0]["expr"].replace("$__rate_interval", "5m")
    rules = tmp_path / "panel.yml"
    rules.write_text(json.dumps({"groups": [{"name": "panel", "rules": [{"record": "panel:errors", "expr": expr}]}]}))
    calls = 'layerscope_rpcs_total{job="layerscope",instance="a",method="%s",code="%s"}'
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": calls % ("Predict", "OK"), "values": "0+60x10"},
                    {"series": calls % ("Capture", "OK"), "values": "0+30x10"},
                    {"series": calls % ("Capture", "INTERNAL"), "values": "0+10x10"},
                ],
                "promql_expr_test": [
                    {
                        "expr": "panel:errors",
                        "eval_time": "10m",
                        "exp_samples": [
                            {"labels": 'panel:errors{method="Predict"}', "value": 0},
                            {"labels": 'panel:errors{method="Capture"}', "value": 0.25},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "panel_test.yml").write_text(json.dumps(tests))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "panel_test.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_panel_queries_are_valid_promql(promtool: str, dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every panel query (Grafana variables replaced by sample values) as a rule."""
    substitutions = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$model": ".*", "$layer": ".*"}
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}:check", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_matches_the_compose_stack(yaml: ModuleType) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = load_yaml(yaml, provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert [source["type"] for source in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"  # the compose service name
    providers = load_yaml(yaml, provisioning / "dashboards" / "layerscope.yaml")["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    folder = providers[0]["options"]["path"]

    grafana = load_yaml(yaml, COMPOSE)["services"]["grafana"]
    mounts = {source: target for source, target, _ in map(parse_volume, grafana["volumes"])}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert Path(mounts["./grafana/layerscope.json"]).parent == Path(folder), "the provider must read the dashboard"
