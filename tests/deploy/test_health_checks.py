"""One health check, three places: the image's HEALTHCHECK, compose's healthcheck and the Kubernetes probes.

They ask the same grpc.health.v1 service with the same budgets: how long start-up may take (the image's
start-period, compose's start_period, the startup probe's period x failures) and how long a live server may
go unanswered (interval x retries, the liveness probe's period x failures), with the same per-check timeout.
An image built in OCI format drops its HEALTHCHECK, so the CI build asks for Docker's format and compose writes
the check out itself.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S,
    image_environment,
    instruction,
    load_yaml,
    load_yaml_documents,
)

_DURATION = re.compile(r"(\d+)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(duration: str) -> float:
    """A Docker/compose duration ("20s", "3m", "1m30s") in seconds."""
    parts = _DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def image_healthcheck() -> dict[str, Any]:
    """The Dockerfile's HEALTHCHECK: its options in seconds (retries a count) and its command."""
    (line,) = instruction("HEALTHCHECK")
    options, _, command = line.partition("CMD")
    found: dict[str, Any] = {"test": ["CMD", *json.loads(command)]}
    for option in shlex.split(options):
        name, _, value = option.removeprefix("--").partition("=")
        found[name] = int(value) if name == "retries" else seconds(value)
    return found


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    return image_healthcheck()


@pytest.fixture(scope="module")
def server(yaml: ModuleType) -> dict[str, Any]:
    (deployment,) = [d for d in load_yaml_documents(yaml, K8S / "deployment.yaml") if d["kind"] == "Deployment"]
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "layerscope")


def test_the_image_declares_every_option(image: dict[str, Any]) -> None:
    assert {"interval", "timeout", "start-period", "retries"} <= image.keys(), "no Docker default left implicit"
    assert image["test"] == ["CMD", "layerscope-healthcheck"]


def test_compose_runs_the_image_check_with_its_timings(yaml: ModuleType, image: dict[str, Any]) -> None:
    check = load_yaml(yaml, COMPOSE)["services"]["layerscope"]["healthcheck"]
    assert check["test"] == image["test"], "the same command as the image's HEALTHCHECK"
    assert seconds(check["interval"]) == image["interval"]
    assert seconds(check["timeout"]) == image["timeout"]
    assert seconds(check["start_period"]) == image["start-period"]
    assert check["retries"] == image["retries"]


def test_kubernetes_probes_have_the_same_budgets(server: dict[str, Any], image: dict[str, Any]) -> None:
    startup, liveness = server["startupProbe"], server["livenessProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == image["start-period"], "the start-up budget"
    assert liveness["periodSeconds"] * liveness["failureThreshold"] == image["interval"] * image["retries"]
    assert liveness["timeoutSeconds"] == image["timeout"]
    assert server["readinessProbe"].get("timeoutSeconds", 1) <= image["timeout"]


def test_kubernetes_probes_ask_the_service_the_image_check_asks(server: dict[str, Any]) -> None:
    script = (DEPLOY / "docker" / "healthcheck.py").read_text(encoding="utf-8")
    assert 'HealthCheckRequest(service="")' in script, "the server's overall health, not one service's"
    port = int(image_environment()["LAYERSCOPE_PORT"])
    assert "os.environ.get('LAYERSCOPE_PORT', '50051')" in script and port == 50051
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[name]["grpc"]["port"] == port, name
    for name in ("startupProbe", "livenessProbe"):
        assert server[name]["grpc"].get("service", "") == "", f"{name}: the server answers, as the image asks"


def test_readiness_waits_for_the_models_found_at_start(server: dict[str, Any]) -> None:
    """SERVING comes before the models load; a pod that took calls then would answer "still loading"."""
    from layerscope.service.grpc.server import MODELS_SERVICE

    assert server["readinessProbe"]["grpc"]["service"] == MODELS_SERVICE


def test_the_check_answers_before_its_timeout(image: dict[str, Any]) -> None:
    """The script gives up on the server before the runtime gives up on the script: a slow server is reported
    as one ("DEADLINE_EXCEEDED") rather than the check being killed."""
    tree = ast.parse((DEPLOY / "docker" / "healthcheck.py").read_text(encoding="utf-8"))
    (answer,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ANSWER_SECONDS" for t in node.targets)
    ]
    assert isinstance(answer, ast.Constant) and answer.value < image["timeout"]


def test_the_ci_build_keeps_the_healthcheck() -> None:
    """podman and buildah build OCI images by default, whose configs have no health check: the HEALTHCHECK
    would vanish with only a warning in the build log."""
    script = (DEPLOY / "ci" / "container.sh").read_text(encoding="utf-8")
    builds = re.findall(r"^\s+podman build [^\n]*", script, re.MULTILINE)
    assert builds and all("--format docker" in build for build in builds), builds
    assert "Docker's" in DOCKERFILE.read_text(encoding="utf-8"), "the Dockerfile says which format it needs"


def test_no_volume_hides_the_prebuilt_kernel(server: dict[str, Any]) -> None:
    """The kernel lies in /opt/layerscope (the image's environment, share/layerscope/ops): a volume mounted
    there, or above it, would hide it, and with no compiler the server would fall back to TensorFlow ops."""
    mounts = [mount["mountPath"].rstrip("/") or "/" for mount in server["volumeMounts"]]
    assert not [m for m in mounts if "/opt/layerscope".startswith(m)], mounts
    assert server["securityContext"]["readOnlyRootFilesystem"], "a read-only root needs no build at run time"
