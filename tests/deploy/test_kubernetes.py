"""deploy/k8s: schema-valid manifests (kubernetes-validate, offline) that agree with each other and the service."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import (
    DOCKERFILE,
    JOB,
    K8S,
    load_yaml,
    load_yaml_documents,
    require_module,
    settings_from_environment,
)

# The oldest Kubernetes these manifests target: gRPC probes are GA from 1.27, a Job's
# backoffLimitPerIndex and the FailIndex pod-failure action arrive in 1.29 (beta, on by default).
KUBERNETES_VERSION = "1.30"
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


@pytest.fixture(scope="module")
def manifests(yaml: ModuleType) -> dict[str, dict[str, Any]]:
    """Every resource the kustomization lists, by kind/name."""
    kustomization = load_yaml(yaml, K8S / "kustomization.yaml")
    found = {}
    for name in kustomization["resources"]:
        for document in load_yaml_documents(yaml, K8S / name):
            found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def container(resource: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(resource)["containers"] if c["name"] == name)


def strategic_merge(base: Any, patch: Any) -> Any:
    """Enough of kubectl's strategic merge for our patches: maps merge, named lists merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        merged_list = list(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old.get("name") == item["name"]), None)
            if index is None:
                merged_list.append(item)
            else:
                merged_list[index] = strategic_merge(merged_list[index], item)
        return merged_list
    return patch


def validate(resource: dict[str, Any]) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {exc}")


def test_kustomization_lists_every_manifest(yaml: ModuleType) -> None:
    kustomization = load_yaml(yaml, K8S / "kustomization.yaml")
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert kustomization["namespace"] == "layerscope"
    assert "patches/gpu.yaml" in (K8S / "kustomization.yaml").read_text(encoding="utf-8"), "GPU patch documented"


def test_required_kinds(manifests: dict[str, dict[str, Any]]) -> None:
    kinds = {key.split("/")[0] for key in manifests}
    wanted = {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler"}
    wanted |= {"PodDisruptionBudget", "ServiceMonitor", "Job"}
    assert wanted <= kinds
    assert manifests["HorizontalPodAutoscaler/layerscope"]["apiVersion"] == "autoscaling/v2"


def test_manifests_match_the_kubernetes_schemas(manifests: dict[str, dict[str, Any]]) -> None:
    for resource in manifests.values():
        if (resource["apiVersion"], resource["kind"]) not in CRDS:
            validate(resource)


def test_gpu_patch_applies_to_a_valid_deployment(yaml: ModuleType, manifests: dict[str, dict[str, Any]]) -> None:
    patch = load_yaml(yaml, K8S / "patches" / "gpu.yaml")
    deployment = manifests["Deployment/layerscope"]
    assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment", "layerscope")
    patched = strategic_merge(copy.deepcopy(deployment), patch)
    validate(patched)
    limits = container(patched, "layerscope")["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert limits["memory"] == container(deployment, "layerscope")["resources"]["limits"]["memory"], (
        "merge kept CPU/memory"
    )


def test_selectors_match_the_pods(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment/layerscope"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = manifests["Service/layerscope"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["clusterIP"] == "None", "headless: gRPC clients balance over the pod IPs"
    pdb = manifests["PodDisruptionBudget/layerscope"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    target = manifests["HorizontalPodAutoscaler/layerscope"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "layerscope")
    # The audit pods must not join the Service.
    audit_labels = manifests["Job/layerscope-audit"]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= audit_labels.items()


def test_pdb_leaves_room_for_a_disruption(manifests: dict[str, dict[str, Any]]) -> None:
    hpa = manifests["HorizontalPodAutoscaler/layerscope"]["spec"]
    pdb = manifests["PodDisruptionBudget/layerscope"]["spec"]
    assert pdb["minAvailable"] < hpa["minReplicas"] <= hpa["maxReplicas"]


def test_server_container_agrees_with_its_settings(
    manifests: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = manifests["Deployment/layerscope"]
    server = container(deployment, "layerscope")
    environment: dict[str, str] = {}
    for source in server["envFrom"]:
        if "configMapRef" in source:
            environment |= manifests[f"ConfigMap/{source['configMapRef']['name']}"]["data"]
        else:
            environment |= manifests[f"Secret/{source['secretRef']['name']}"]["stringData"]
    settings = settings_from_environment(monkeypatch, environment)
    assert settings.host == "0.0.0.0"
    assert settings.database_url.startswith("postgresql"), "production runs on PostgreSQL"
    assert settings.tokens, "a cluster deployment must not run without authentication"

    ports = {port["name"]: port["containerPort"] for port in server["ports"]}
    assert ports == {"grpc": settings.port, "metrics": settings.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["grpc"]["port"] == settings.port, f"{probe} must use the gRPC health service"
    assert {"requests", "limits"} <= server["resources"].keys()
    mounts = {mount["mountPath"] for mount in server["volumeMounts"]}
    assert str(settings.model_repository) in mounts
    assert any(str(settings.spool_dir).startswith(path) for path in mounts), "the spool must be on a volume"
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > settings.grace_seconds, "SIGKILL would cut the graceful drain short"


def test_pods_run_as_the_image_user(manifests: dict[str, dict[str, Any]]) -> None:
    match = re.search(r"^ARG UID=(\d+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "Dockerfile: ARG UID"
    for key in ("Deployment/layerscope", "Job/layerscope-audit"):
        context = pod_spec(manifests[key])["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == int(match.group(1)), key


def test_claims_and_references_exist(manifests: dict[str, dict[str, Any]]) -> None:
    for key in ("Deployment/layerscope", "Job/layerscope-audit"):
        for volume in pod_spec(manifests[key])["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert f"PersistentVolumeClaim/{volume['persistentVolumeClaim']['claimName']}" in manifests


def test_service_monitor_structure(manifests: dict[str, dict[str, Any]]) -> None:
    """ServiceMonitor is a CRD without a schema in kubernetes-validate: check what the operator needs."""
    monitor = manifests["ServiceMonitor/layerscope"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector", "targetLabels", "podTargetLabels"}
    service = manifests["Service/layerscope"]
    service_labels = service["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= service_labels.items(), "selects the Service"
    # The alerts select job="layerscope": the operator takes the job from this Service label.
    assert service_labels[spec["jobLabel"]] == JOB

    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    container_ports = {
        port["name"]: port["containerPort"]
        for port in container(manifests["Deployment/layerscope"], "layerscope")["ports"]
    }
    assert spec["endpoints"], "no endpoints"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings"}
        target = service_ports[endpoint["port"]]["targetPort"]
        assert container_ports.get(target, target) == 9464, "the endpoint must be the metrics port"
        assert endpoint.get("path", "/metrics") == "/metrics"
        for field in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"\d+(ms|s|m)", endpoint[field]), f"{field}: a Prometheus duration"


def test_audit_job_is_an_indexed_sharded_audit(manifests: dict[str, dict[str, Any]]) -> None:
    job = manifests["Job/layerscope-audit"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert pod_spec(job)["restartPolicy"] == "Never"
    audit = container(job, "audit")
    command = audit["command"] + audit["args"]
    assert command[:3] == ["layerscope", "audit", "/models"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--shard"] == f"$(JOB_COMPLETION_INDEX)/{spec['completions']}", "N must equal completions"
    assert options["--format"] == "json"
    assert options["--output"] == "/reports/shard-$(JOB_COMPLETION_INDEX).json"
    # $(VAR) is expanded only from variables the container declares.
    assert "JOB_COMPLETION_INDEX" in {variable["name"] for variable in audit["env"]}
    mounts = {mount["mountPath"]: mount for mount in audit["volumeMounts"]}
    assert mounts["/models"].get("readOnly") is True
    assert "/reports" in mounts


def test_audit_job_flags_exist_in_the_cli(manifests: dict[str, dict[str, Any]]) -> None:
    import typer.main

    from layerscope.cli.app import app
    from layerscope.cli.audit.command import AUDIT

    audit = typer.main.get_command(app).commands["audit"].commands[AUDIT]  # type: ignore[attr-defined]
    known = {option for parameter in audit.params for option in parameter.opts}
    job = container(manifests["Job/layerscope-audit"], "audit")
    wanted = {argument for argument in job["args"] if argument.startswith("--")}
    missing = wanted - known
    assert not missing, f"`layerscope audit` has no {sorted(missing)}"


def test_secret_holds_placeholders_only(manifests: dict[str, dict[str, Any]]) -> None:
    secret = manifests["Secret/layerscope-secrets"]
    assert "data" not in secret, "use stringData placeholders, never encoded values"
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())


@pytest.mark.slow
def test_kustomize_builds(yaml: ModuleType) -> None:
    """kubectl's own kustomize renders the base: catches a broken kustomization the checks above would not."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the schema checks above do not need it)")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {doc["metadata"].get("namespace") for doc in rendered if doc["kind"] != "Namespace"} == {"layerscope"}
