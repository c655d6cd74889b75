"""Two distributions: `layerscope-client` (client/pyproject.toml) declares everything the client imports and
nothing of the server's; `layerscope` (pyproject.toml) holds the server and depends on the client.
tests/integration/test_client_only_install.py installs the client alone for real."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
SERVER = tomllib.loads((ROOT / "pyproject.toml").read_text())
DISTRIBUTION_OF = {"grpc": "grpcio", "grpc_health": "grpcio-health-checking", "google": "protobuf", "numpy": "numpy"}
"""The top-level module -> the distribution that provides it, for what the client may import."""


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[@]", requirement, maxsplit=1)[0].lower()


def _imported(folder: Path) -> set[str]:
    """Top-level modules imported by every module under `folder`, also inside functions."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"layerscope"}


def test_the_client_declares_what_it_imports_and_nothing_of_the_server() -> None:
    imported = _imported(ROOT / "client" / "layerscope")
    assert imported <= set(DISTRIBUTION_OF), f"the client imports modules of no declared dependency: {imported}"
    declared = {_name(r) for r in CLIENT["project"]["dependencies"]}
    assert declared == {DISTRIBUTION_OF[m] for m in imported}
    assert CLIENT["project"]["name"] == "layerscope-client"
    assert CLIENT["tool"]["hatch"]["build"]["targets"]["wheel"]["only-include"] == ["layerscope"]
    for package in ("client", "v1", "oip"):
        assert (ROOT / "client" / "layerscope" / package / "__init__.py").is_file()
    assert not (ROOT / "client" / "layerscope" / "__init__.py").exists(), "layerscope is a namespace package"


def test_the_server_depends_on_the_client_and_ships_only_its_own_packages() -> None:
    requirements = SERVER["project"]["dependencies"]
    assert "layerscope-client @ {root:uri}/client" in requirements
    assert SERVER["project"]["version"] == CLIENT["project"]["version"]
    wheel = SERVER["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["only-include"] == ["service/layerscope"]
    assert not (ROOT / "service" / "layerscope" / "__init__.py").exists(), "layerscope is a namespace package"


def test_bootstrap_installs_both_editable() -> None:
    lines = (ROOT / "scripts" / "bootstrap.sh").read_text().splitlines()
    assert any("-e '.[dev]'" in line for line in lines)
    assert any("-e ./client" in line for line in lines)
