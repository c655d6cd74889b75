"""Fixtures and helpers for the deploy/ checks: file loading, tools, and the metrics the service exports.

These tests read files and run promtool; none starts the service or imports TensorFlow, so the whole
folder runs in a few seconds.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "layerscope.json"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

# The Prometheus job the alerts select (up{job="layerscope"}); the scrape config and the ServiceMonitor
# must produce it.
JOB = "layerscope"
# Labels Prometheus adds to every scraped series, on top of what the service exports.
TARGET_LABELS = frozenset({"job", "instance"})


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing_tool(what: str, how: str) -> None:
    """Skip on a developer machine, fail in CI: a check that silently skips in CI is no check."""
    message = f"{what} is not available; {how}"
    if in_ci():
        pytest.fail(message + " (CI=true: required)")
    pytest.skip(message)


def require_module(name: str, pip_name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing_tool(f"Python package {pip_name}", f"`.venv/bin/pip install {pip_name}`")
        raise  # unreachable: missing_tool skips or fails


@pytest.fixture(scope="session")
def yaml() -> ModuleType:
    return require_module("yaml", "pyyaml")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_tool("promtool", "run `bash scripts/install_promtool.sh`")
    assert path is not None
    return path


def load_yaml(yaml: ModuleType, path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_yaml_documents(yaml: ModuleType, path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


# --- PromQL: the metric and label names an expression uses ------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# level:metric:operations, the recording-rule naming convention alerts.yml follows.
_RECORDED = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def _code_only(expr: str) -> str:
    """The expression without string literals and Grafana variables, so neither looks like a name."""
    return _GRAFANA_VARIABLE.sub(" ", _STRING.sub('""', expr))


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: layerscope_*, recorded level:metric:op names, and `up`."""
    names = set()
    for token in _IDENTIFIER.findall(_code_only(expr)):
        if token.startswith("layerscope_") or token == "up" or _RECORDED.match(token):
            names.add(token)
    return names


def selector_labels(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for every label matcher written inside a selector's braces."""
    for metric, matchers in _SELECTOR.findall(_STRING.sub('""', _GRAFANA_VARIABLE.sub("x", expr))):
        for label in _MATCHER_LABEL.findall(matchers):
            yield metric, label


def grouping_labels(expr: str) -> set[str]:
    """Labels named in by / without / on / ignoring / group_left / group_right clauses."""
    labels: set[str] = set()
    for inside in _GROUPING.findall(_code_only(expr)):
        labels.update(label.strip() for label in inside.split(",") if label.strip())
    return labels


# --- What the service exports ------------------------------------------------------------------------------


def exported_series() -> dict[str, frozenset[str]]:
    """Every sample name the service can export, with its label names.

    Built from the real `Telemetry` and `ModelHealthCollector` on a fresh registry: each labelled metric is
    given one child (a labelled metric with no child exports no sample), and the collector gets one fake
    model with one layer and one finding, so every family produces samples. `_created` samples are left
    out: Prometheus users should not rely on them.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.parser import text_string_to_metric_families

    from layerscope.service.domain.model_health import LayerHealth, ModelHealth
    from layerscope.service.telemetry import ModelHealthCollector, Telemetry

    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    for metric in vars(telemetry).values():
        # _labelnames is prometheus_client's own record of a metric's labels; there is no public accessor.
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*("x" for _ in metric._labelnames))
    health = ModelHealth(
        model="digits",
        version=3,
        layers=(
            LayerHealth("dense", dead_unit_fraction=0.5, saturated_fraction=0.1, non_finite=2, activation_rms=1.5),
        ),
        findings={("dense-on-spatial", "error"): 1},
        gradient_norms={"dense": 0.25},
    )
    registry.register(ModelHealthCollector(lambda: [health], max_layer_series=10))

    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


@pytest.fixture(scope="session")
def exported() -> dict[str, frozenset[str]]:
    series = exported_series()
    # A vacuous export would make every name check pass: make sure both sources are in it.
    assert "layerscope_rpcs_total" in series
    assert "layerscope_layer_dead_unit_fraction" in series
    return series


def flatten(items: Iterable[Iterable[str]]) -> set[str]:
    return {item for group in items for item in group}


def parse_volume(spec: str) -> tuple[str, str, str]:
    """A compose short-syntax volume `source:target[:mode]` as (source, target, mode)."""
    parts = spec.split(":")
    if len(parts) == 2:
        return parts[0], parts[1], "rw"
    source, target, mode = parts
    return source, target, mode


def settings_from_environment(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Any:
    """Build the service's Settings from LAYERSCOPE_* variables exactly as `layerscope serve` reads them.

    Fails on a variable that names no setting (a typo the service would silently ignore) and on a value
    the service would reject at start-up.
    """
    from layerscope.service.settings import Settings

    fields = set(Settings.model_fields)
    unknown = [key for key in environment if key.startswith("LAYERSCOPE_") and key[11:].lower() not in fields]
    assert not unknown, f"no such setting: {unknown} (known: {sorted(fields)})"
    for key in list(os.environ):
        if key.startswith("LAYERSCOPE_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        if key.startswith("LAYERSCOPE_"):
            monkeypatch.setenv(key, str(value))
    return Settings()
