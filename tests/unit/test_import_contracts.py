"""The import contracts in pyproject.toml ([tool.importlinter]) hold: which part of layerscope may import what.

import-linter counts every import statement, also those inside functions, so "the client never imports
the service, not even lazily" is checked here rather than hoped for. A broken contract prints the chain
of imports that breaks it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_contracts_cover_the_directions_the_design_fixes() -> None:
    assert {c["id"] for c in CONTRACTS} >= {
        "client-is-a-leaf",
        "diagnosis-is-pure",
        "only-grpc-speaks-grpc",
        "only-capture-and-models-import-tensorflow",
        "dependencies-point-one-way",
    }


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_contract_is_kept(contract: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("NO_COLOR", "1")
    status = lint_imports(
        config_filename=os.fspath(ROOT / "pyproject.toml"), limit_to_contracts=(contract,), no_cache=True, no_logo=True
    )
    assert status == 0, f"import contract {contract!r} is broken: see the output above"
