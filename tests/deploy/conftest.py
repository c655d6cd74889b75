"""Fixtures and helpers for the deploy/ checks: file loading, tools, and the metrics the service exports.

These tests read files and run promtool; none starts the service or imports TensorFlow, so the whole
folder runs in a few seconds.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
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


# --- The Dockerfile as data ------------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends in a continuation"
    result = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def instruction(name: str) -> list[str]:
    return [arguments for keyword, arguments in instructions() if keyword == name]


def image_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for arguments in instruction("ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            environment[key] = value
    return environment


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

    Built from the real `Telemetry`, `ModelHealthCollector`, `MonitorCollector` and `ModelLoadCollector` on a
    fresh registry: each labelled metric is given one child (a labelled metric with no child exports no sample),
    the health collector gets one fake model with one layer and one finding, the load collector one model's load
    time, and the monitor collector one fake model
    version whose last window has a drifting layer and whose reference has a dead-unit fraction, so every
    family produces samples. `_created` samples are left out: Prometheus users should not rely on them.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.parser import text_string_to_metric_families

    from layerscope.service.domain.model_health import LayerHealth, ModelHealth
    from layerscope.service.telemetry import ModelHealthCollector, ModelLoadCollector, MonitorCollector, Telemetry

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
            # Neither ReLU-family nor bounded: the rules judge neither fraction, so neither is exported.
            LayerHealth("head", dead_unit_fraction=None, saturated_fraction=None, non_finite=0, activation_rms=0.7),
        ),
        findings={("dense-on-spatial", "error"): 1},
        gradient_norms={"dense": 0.25},
    )
    registry.register(ModelHealthCollector(lambda: [health], max_layer_series=10))
    registry.register(MonitorCollector(lambda: [monitor_snapshot()], max_layer_series=10))
    registry.register(ModelLoadCollector(lambda: [("digits", 3, 1.5)]))

    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


def monitor_snapshot() -> Any:
    """A fake `MonitorSnapshot` of model digits version 3, built from the real dataclasses: a closed window in
    which `dense` drifts (and `head` does not), judged against a reference in which `dense` (ReLU) has a
    dead-unit fraction and `head` (linear) has none; some requests skipped."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from layerscope.service.monitoring.drift import LayerReference, Reference
    from layerscope.service.monitoring.monitor import MonitorSnapshot
    from layerscope.service.monitoring.window import LayerDrift, LayerWindow, Window

    ended = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    started = ended - timedelta(seconds=300)

    def layer_reference(dead: float | None) -> LayerReference:
        edges = np.linspace(-1.0, 1.0, 9)
        features = len(edges) + 2 + 4 + 1  # histogram, 4 units' activity, scale
        return LayerReference(
            edges, np.zeros(features), np.ones(features), units=4, scale=1.0, dof=8.0, dead_unit_fraction=dead
        )

    reference = Reference(
        reference_id="ref-1",
        model="digits",
        version=3,
        created_at=started - timedelta(hours=1),
        source="traffic",
        requests=200,
        layers={"dense": layer_reference(0.1), "head": layer_reference(None)},
    )
    window = Window(
        window_id="win-1",
        model="digits",
        version=3,
        replica="a",
        started=started,
        ended=ended,
        reference_id=reference.reference_id,
        layers={"dense": LayerWindow(count=640, requests=20), "head": LayerWindow(count=200, requests=20)},
        drift={
            "dense": LayerDrift(score=2.5, statistic=75.0, threshold=30.0, drifting=True, part="activity"),
            "head": LayerDrift(score=0.4, statistic=12.0, threshold=30.0, drifting=False, part="histogram"),
        },
    )
    return MonitorSnapshot(
        model="digits",
        version=3,
        sample_rate=0.05,
        samples=120,
        skipped={"busy": 3, "budget": 1},
        nonfinite_samples=2,
        windows_closed=4,
        reference_ready=True,
        last_window=window,
        reference=reference,
    )


@pytest.fixture(scope="session")
def exported() -> dict[str, frozenset[str]]:
    series = exported_series()
    # A vacuous export would make every name check pass: make sure all three sources are in it.
    assert "layerscope_rpcs_total" in series
    assert "layerscope_layer_dead_unit_fraction" in series
    assert {"layerscope_layer_drift_score", "layerscope_model_first_drifting_layer"} <= series.keys()
    assert "layerscope_layer_reference_dead_unit_fraction" in series
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
