"""deploy/compose.yaml as a CI machine can run it: what changes is said here, the rest comes unchanged.

    python deploy/ci/compose_ci.py OUT.yaml SERVICE=IMAGE... [SERVICE:VARIABLE=VALUE...]

- Images: each SERVICE=IMAGE replaces that service's image (layerscope: the image built and checked before,
  its `build` dropped; postgres and prometheus: ours from Debian's packages, deploy/ci/images/, since Docker
  Hub is out of reach).
- Grafana is left out, and what depended on it: no package of it is reachable from these machines (not in
  Debian, no registry). Its provisioning and dashboard stay checked as data by tests/deploy.
- Published ports go to 127.0.0.1 on free ports: compose publishes on every interface, on fixed ports, and the
  machine is shared. One line per port on stdout: `SERVICE CONTAINER_PORT HOST_PORT`.
- Relative bind mounts become absolute, since OUT lies elsewhere.
- SERVICE:VARIABLE=VALUE adds to a service's environment (the second pass on a database that is not UTF-8).

Environment, health checks, dependencies and their conditions, commands, volumes, restart policies and grace
periods are compose.yaml's own.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "compose.yaml"
LEFT_OUT = ("grafana",)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def derive(
    compose: dict[str, Any], images: dict[str, str], environment: dict[str, dict[str, str]] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The runnable compose document, and the published ports as `SERVICE CONTAINER_PORT HOST_PORT` lines."""
    environment = environment or {}
    unknown = sorted((set(images) | set(environment)) - set(compose["services"]))
    if unknown:
        raise SystemExit(f"expected services among {sorted(compose['services'])}; received {unknown}")
    services = {name: dict(service) for name, service in compose["services"].items() if name not in LEFT_OUT}
    published = []
    for name, service in services.items():
        if name in images:
            service["image"] = images[name]
            service.pop("build", None)
        if name in environment:
            service["environment"] = {**service.get("environment", {}), **environment[name]}
        ports = []
        for spec in service.get("ports", []):
            container_port = str(spec).split(":")[-1]
            host_port = free_port()
            ports.append(f"127.0.0.1:{host_port}:{container_port}")
            published.append(f"{name} {container_port} {host_port}")
        if ports:
            service["ports"] = ports
        service["volumes"] = [_absolute(volume) for volume in service.get("volumes", [])]
        depends = service.get("depends_on")
        if isinstance(depends, dict):
            service["depends_on"] = {k: v for k, v in depends.items() if k not in LEFT_OUT}
        elif isinstance(depends, list):
            service["depends_on"] = [k for k in depends if k not in LEFT_OUT]
    volumes = {k: v for k, v in (compose.get("volumes") or {}).items() if not k.startswith(LEFT_OUT)}
    return {**compose, "services": services, "volumes": volumes}, published


def _absolute(volume: str) -> str:
    source, _, rest = volume.partition(":")
    if source.startswith("."):
        source = str((COMPOSE.parent / source).resolve())
    return f"{source}:{rest}"


def main(argv: list[str]) -> int:
    if len(argv) < 1 or not all("=" in pair for pair in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    images: dict[str, str] = {}
    environment: dict[str, dict[str, str]] = {}
    for pair in argv[1:]:
        key, _, value = pair.partition("=")
        service, _, variable = key.partition(":")
        if variable:
            environment.setdefault(service, {})[variable] = value
        else:
            images[service] = value
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    derived, published = derive(compose, images, environment)
    Path(argv[0]).write_text(yaml.safe_dump(derived, sort_keys=False), encoding="utf-8")
    print("\n".join(published))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
