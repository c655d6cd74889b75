"""The helpers of deploy/ci/container.sh that decide what the CI run differs in: the compose file it runs and the
pip settings it hands the image build. (The run itself needs root and minutes: CI runs it, not this suite.)"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import COMPOSE, DEPLOY, load_yaml


def ci_module(name: str) -> ModuleType:
    """deploy/ci/NAME.py: scripts, not a package."""
    spec = importlib.util.spec_from_file_location(f"deploy_ci_{name}", DEPLOY / "ci" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


IMAGES = {"layerscope": "localhost/layerscope:ci", "postgres": "localhost/pg:ci", "prometheus": "localhost/prom:ci"}


@pytest.fixture(scope="module")
def derived(yaml: ModuleType) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    original = load_yaml(yaml, COMPOSE)
    document, published = ci_module("compose_ci").derive(original, IMAGES)
    return original, document, published


def test_ci_compose_differs_only_where_it_says(derived: tuple[dict[str, Any], dict[str, Any], list[str]]) -> None:
    original, document, _ = derived
    assert set(document["services"]) == set(original["services"]) - {"grafana"}, "Grafana only is left out"
    assert not [v for v in document["volumes"] if v.startswith("grafana")]
    changed = {"image", "build", "ports", "volumes"}
    for name, service in document["services"].items():
        before = original["services"][name]
        assert service["image"] == IMAGES[name] and "build" not in service
        for key in (set(before) | set(service)) - changed - {"depends_on"}:
            assert service.get(key) == before.get(key), f"{name}.{key} must be compose.yaml's own"
        kept = before.get("depends_on", {})
        expected = {k: v for k, v in kept.items() if k != "grafana"} if isinstance(kept, dict) else kept
        assert service.get("depends_on", expected) == expected, f"{name}: its dependencies and their conditions"


def test_ci_compose_publishes_on_loopback_and_mounts_absolute_paths(
    derived: tuple[dict[str, Any], dict[str, Any], list[str]],
) -> None:
    original, document, published = derived
    for name, service in document["services"].items():
        targets = [spec.split(":")[-1] for spec in original["services"][name].get("ports", [])]
        assert [spec.split(":")[-1] for spec in service.get("ports", [])] == targets
        assert all(spec.startswith("127.0.0.1:") for spec in service.get("ports", []))
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith("."), volume
            assert not source.startswith("/") or Path(source).exists(), volume
    assert sorted(line.rsplit(" ", 1)[0] for line in published) == sorted(
        f"{name} {spec.split(':')[-1]}"
        for name in document["services"]
        for spec in original["services"][name].get("ports", [])
    )


def test_environment_is_added_to_what_compose_sets(yaml: ModuleType) -> None:
    original = load_yaml(yaml, COMPOSE)
    variables = {"postgres": {"POSTGRES_INITDB_ARGS": "--encoding=SQL_ASCII --locale=C"}}
    document, _ = ci_module("compose_ci").derive(original, IMAGES, variables)
    assert document["services"]["postgres"]["environment"] == {
        **original["services"]["postgres"]["environment"],
        "POSTGRES_INITDB_ARGS": "--encoding=SQL_ASCII --locale=C",
    }


def test_an_unknown_service_is_refused_by_name(yaml: ModuleType) -> None:
    with pytest.raises(SystemExit, match=r"expected services among \[.*'postgres'.*\]; received \['postgress'\]"):
        ci_module("compose_ci").derive(load_yaml(yaml, COMPOSE), {"postgress": "x"})


def test_pip_settings_follow_pips_order_and_leave_the_cert_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip_secret = ci_module("pip_secret")
    index = tmp_path / "pypi" / "simple"
    index.mkdir(parents=True)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("certificates")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nindex_url = https://mirror/simple\ncert = {bundle}\n[install]\ntimeout = 5\n")
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_TIMEOUT", "60")  # the environment over the files, as pip reads them
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file://{index}")
    out = tmp_path / "out.conf"
    assert pip_secret.main([str(out)]) == 0
    text = out.read_text()
    assert "index-url = https://mirror/simple" in text and "timeout = 60" in text
    assert "cert" not in text, "the CA bundle travels as its own secret"
    assert out.stat().st_mode & 0o077 == 0, "owner-only"
    assert pip_secret.ca_bundle(pip_secret.host_settings()) == bundle
    assert pip_secret.local_paths(f"file://{index} https://elsewhere/simple") == [index.parent]
