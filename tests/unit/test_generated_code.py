"""The checked-in generated code is exactly what the protos generate today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_protocol_changes_nothing() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_client_package_imports_without_the_service_or_tensorflow() -> None:
    code = (
        "import sys, layerscope.client as c; c.Client; "
        "heavy = ('tensorflow', 'keras', 'layerscope.service', 'typer', 'rich'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "sys.exit(repr(bad) if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
