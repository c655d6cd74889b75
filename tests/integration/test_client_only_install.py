"""The client installs alone (client/pyproject.toml: grpcio, protobuf, NumPy) into an empty virtual environment
and calls a running server; TensorFlow, Keras and SQLAlchemy never get installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerHandle
from tests.support import models

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("tensorflow", "tensorflow-cpu", "keras", "sqlalchemy", "alembic", "psycopg", "typer", "rich")
"""Distributions of the server (and its command line) that the client must not pull in."""

SCRIPT = """
import json, sys
import numpy as np
import layerscope.client
from layerscope.client import Client, NotFoundError

target, archive = sys.argv[1], sys.argv[2]
with Client(target, timeout=120) as c:
    health = c.health()
    info = c.upload_model("alone", archive)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype="float32")
    outputs = c.predict("alone", x)
    cap = c.capture("alone", x, full=["conv"])
    report = c.diagnose("alone")
    try:
        c.predict("ghost", x)
        missing = None
    except NotFoundError as exc:
        missing = exc.code_name
    c.unload_model("alone", remove=True)
print(json.dumps({
    "module": layerscope.client.__file__,
    "health": health,
    "layers": list(info.layers),
    "output_shape": list(outputs["probabilities"].shape),
    "conv_shape": list(cap.tensors["conv"]["activation"].shape),
    "inputs_used": report.inputs_used,
    "missing": missing,
    "imported": sorted(m for m in ("tensorflow", "keras", "sqlalchemy", "layerscope.service") if m in sys.modules),
}))
"""


def run(command: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH from the test run (it names this clone's client/ and service/): the venv must stand alone.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)  # type: ignore[call-overload, no-any-return]


def install_client(venv: Path) -> Path:
    """`pip install ./client` into a new, empty venv; skips where no package index answers (fails in CI)."""
    run([sys.executable, "-m", "venv", str(venv)], timeout=120).check_returncode()
    python = venv / "bin" / "python"
    try:
        done = run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(ROOT / "client")], timeout=600)  # fmt: skip
    except subprocess.TimeoutExpired:
        reason = "installing the client took over 600 s (no package index?)"
    else:
        if done.returncode == 0:
            return python
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        reason = f"could not install the client and its dependencies (no package index?): {last[0]}"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.timeout(900)  # the install (600 s at most: grpcio and NumPy from the index) and the script (120 s)
def test_the_client_installs_alone_and_calls_a_running_server(server: ServerHandle, tmp_path: Path) -> None:
    python = install_client(tmp_path / "venv")
    listed = run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"], timeout=60)
    installed = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert "layerscope-client" in installed
    assert not installed & set(SERVER_ONLY), f"the client pulled in server packages: {installed & set(SERVER_ONLY)}"
    assert "layerscope" not in installed  # the server's distribution

    archive = models.save(models.small_cnn(), tmp_path)
    script = tmp_path / "call_server.py"
    script.write_text(SCRIPT)
    # -I: no PYTHON* variables, no user site, no script folder on sys.path: only what the venv holds.
    done = run([str(python), "-I", str(script), server.target, str(archive)], timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["module"]).is_relative_to(tmp_path / "venv"), result["module"]
    assert result["imported"] == []
    assert result["health"] == "SERVING"
    assert result["layers"] == ["conv", "pool", "flatten", "hidden", "probabilities"]
    assert result["output_shape"] == [4, 3]
    assert result["conv_shape"] == [4, 6, 6, 4]
    assert result["inputs_used"]
    assert result["missing"] == "not-found"
