"""deploy/compose.yaml and deploy/docker: parse, agree with `layerscope serve`, and the health check works.

No Docker engine runs here, so nothing is built: the files are checked as data, and the image's
HEALTHCHECK command is run for real against a gRPC health server.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    JOB,
    PROMETHEUS,
    ROOT,
    image_environment,
    instruction,
    instructions,
    load_yaml,
    parse_volume,
    settings_from_environment,
)

SERVE = ["layerscope", "serve", "--host", "0.0.0.0"]
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


@pytest.fixture(scope="module")
def compose(yaml: ModuleType) -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(yaml, COMPOSE)
    return data


# --- compose.yaml -------------------------------------------------------------------------------------------


def test_every_service_has_an_image_or_build(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"layerscope", "postgres", "prometheus", "grafana"} <= services.keys()
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: no image and no build"
    assert services["postgres"]["image"].startswith("postgres:15")


def test_layerscope_builds_from_the_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["layerscope"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT, "the build context must hold pyproject.toml"
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_layerscope_environment_and_ports_match_serve(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose["services"]["layerscope"]
    environment = {**image_environment(), **service["environment"]}
    settings = settings_from_environment(monkeypatch, environment)
    assert settings.database_url.startswith("postgresql"), "the compose stack runs on PostgreSQL"
    assert "@postgres:" in settings.database_url, "the database host is the compose service"
    assert "postgres" in service["depends_on"]

    published = {int(port.split(":")[-1]) for port in service["ports"]}
    assert {settings.port, settings.metrics_port} <= published
    targets = {target for _, target, _ in map(parse_volume, service["volumes"])}
    assert str(settings.model_repository) in targets, "the model repository must be a volume"
    assert str(settings.spool_dir) in targets, "the spool must outlive the container"


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _, _ in map(parse_volume, service.get("volumes", [])):
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_prometheus_mounts_the_rules_where_its_config_finds_them(yaml: ModuleType, compose: dict[str, Any]) -> None:
    mounts = {source: target for source, target, _ in map(parse_volume, compose["services"]["prometheus"]["volumes"])}
    config_target = Path(mounts["./prometheus/prometheus.yml"])
    alerts_target = Path(mounts["./prometheus/alerts.yml"])
    config = load_yaml(yaml, PROMETHEUS / "prometheus.yml")
    assert f"--config.file={config_target}" in compose["services"]["prometheus"]["command"]
    resolved = {config_target.parent / rule for rule in config["rule_files"]}
    assert alerts_target in resolved, "rule_files must name the mounted alerts.yml"


def test_prometheus_scrapes_the_metrics_port_as_the_alerts_job(
    yaml: ModuleType, compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_environment(
        monkeypatch, {**image_environment(), **compose["services"]["layerscope"]["environment"]}
    )
    config = load_yaml(yaml, PROMETHEUS / "prometheus.yml")
    job = next(job for job in config["scrape_configs"] if job["job_name"] == JOB)
    targets = [target for static in job["static_configs"] for target in static["targets"]]
    assert targets == [f"layerscope:{settings.metrics_port}"]


# --- Dockerfile ---------------------------------------------------------------------------------------------


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM arguments, the stage's instructions) per stage."""
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            found.append((arguments, []))
        elif found:
            found[-1][1].append((keyword, arguments))
    return found


def global_arguments() -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    result = {}
    for keyword, arguments in instructions():
        if keyword == "FROM":
            break
        name, _, default = arguments.partition("=")
        result[name] = default
    return result


def test_dockerfile_shape() -> None:
    (build, build_steps), (runtime, _) = stages()
    arguments = global_arguments()
    assert arguments.get("PYTHON_IMAGE") == "python:3.11-slim"
    assert arguments.get("BUILD_IMAGE") == "${PYTHON_IMAGE}", "the build stage's base defaults to the runtime's"
    assert build.startswith("${BUILD_IMAGE} AS build") and runtime == "${PYTHON_IMAGE}", "bases chosen by build arg"
    assert "EXTRAS" in {arguments.partition("=")[0] for keyword, arguments in build_steps if keyword == "ARG"}
    runs = [arguments for keyword, arguments in build_steps if keyword == "RUN"]
    assert any(re.search(r"pip install \"?\.", line) for line in runs), "installs the package (pip install .)"
    assert set(" ".join(instruction("EXPOSE")).split()) == {"50051", "9464"}
    users = instruction("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the server must not run as root"
    assert json.loads(instruction("CMD")[-1]) == SERVE


def test_the_kernel_is_prebuilt_where_the_compiler_is_and_no_compiler_ships() -> None:
    (_, build_steps), (_, runtime_steps) = stages()
    build_runs = [arguments for keyword, arguments in build_steps if keyword == "RUN"]
    assert any("g++" in line for line in build_runs), "the build stage makes sure of a C++ compiler"
    prebuild = [i for i, line in enumerate(build_runs) if "-m layerscope.service.runtime.native prebuild" in line]
    installs = [i for i, line in enumerate(build_runs) if "pip install" in line]
    assert prebuild and installs and prebuild[0] > installs[0], "prebuilt for the TensorFlow pip installed"
    # prebuild writes to the environment's share/layerscope/ops: the whole environment crosses into the image.
    assert ("COPY", "--from=build /opt/layerscope /opt/layerscope") in runtime_steps
    runtime_runs = " ".join(arguments for keyword, arguments in runtime_steps if keyword == "RUN")
    assert not re.search(r"apt-get|g\+\+|gcc|build-essential", runtime_runs), "no compiler at run time"


def test_pip_reads_the_builders_configuration_from_secrets_only() -> None:
    (_, build_steps), _ = stages()
    (install,) = [arguments for keyword, arguments in build_steps if keyword == "RUN" and "pip install" in arguments]
    assert "--mount=type=secret,id=pip.conf" in install and "--mount=type=secret,id=ca-bundle" in install
    assert "PIP_CONFIG_FILE=/run/secrets/pip.conf" in install and "PIP_CERT=/run/secrets/ca-bundle" in install
    environment = image_environment()
    assert not {"PIP_CONFIG_FILE", "PIP_CERT"} & environment.keys(), "a secret's path must not outlive its step"


def test_dockerfile_copies_what_the_image_needs() -> None:
    copied = set()
    for line in instruction("COPY"):
        if not line.startswith("--from"):
            copied |= {part.rstrip("/") for part in line.split()[:-1]}
    assert {"pyproject.toml", "README.md", "client", "service", "deploy/docker/healthcheck.py"} <= copied
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
    text = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "exclude everything (.venv, .git), then re-include the sources"
    assert {f"!{path}" for path in copied} <= {pattern.rstrip("/") for pattern in patterns}, "COPY needs them"


def test_image_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_environment(monkeypatch, image_environment())
    assert (settings.port, settings.metrics_port) == (50051, 9464)


def healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK, run here: the script it names, as the Dockerfile installs it on the PATH."""
    (line,) = instruction("HEALTHCHECK")
    command = json.loads(line[line.index("CMD") + 3 :])
    assert command == ["layerscope-healthcheck"], "exec form: the installed health check"
    installed = {parts[-1]: parts[:-1] for parts in (line.split() for line in instruction("COPY"))}
    assert installed.get("/opt/layerscope/bin/layerscope-healthcheck") == [HEALTHCHECK.relative_to(ROOT).as_posix()]
    assert image_environment()["PATH"].startswith("/opt/layerscope/bin:"), "found on the image's PATH"
    assert os.access(HEALTHCHECK, os.X_OK), "COPY keeps the mode: the script must be executable"
    return [sys.executable, str(HEALTHCHECK)]


@pytest.fixture
def health_server() -> Iterator[tuple[int, Any]]:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, (servicer, health_pb2.HealthCheckResponse)
    finally:
        server.stop(grace=None)


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LAYERSCOPE_PORT": str(port)}
    return subprocess.run(
        healthcheck_command(), env=environment, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.slow
def test_healthcheck_passes_when_serving_and_fails_otherwise(health_server: tuple[int, Any]) -> None:
    port, (servicer, response) = health_server
    servicer.set("", response.SERVING)
    serving = run_healthcheck(port)
    assert serving.returncode == 0, serving.stderr
    servicer.set("", response.NOT_SERVING)
    assert run_healthcheck(port).returncode != 0, "NOT_SERVING (starting or draining) must be unhealthy"


@pytest.mark.slow
def test_healthcheck_fails_when_nothing_listens(health_server: tuple[int, Any]) -> None:
    port, _ = health_server
    # A port that was free a moment ago: nothing answers there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert free != port
    assert run_healthcheck(free).returncode != 0


def test_serve_accepts_the_image_command() -> None:
    import typer.main

    from layerscope.cli.app import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {option for parameter in serve.params for option in parameter.opts}
    assert {flag for flag in SERVE if flag.startswith("--")} <= options


# --- scripts/install_promtool.sh ------------------------------------------------------------------------------


@pytest.mark.slow
def test_install_promtool_is_valid_bash_and_quiet_when_installed() -> None:
    script = ROOT / "scripts" / "install_promtool.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if subprocess.run(["bash", "-c", "command -v promtool"], capture_output=True, check=False).returncode != 0:
        pytest.skip("promtool is not installed; running the script here would install it")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), "idempotent and quiet"


def test_deploy_readme_exists() -> None:
    assert (DEPLOY / "README.md").is_file()
