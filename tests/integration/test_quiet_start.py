"""On a CPU machine the CLI prints only what the user asked for: no TensorFlow start-up lines, TensorFlow
loaded only where models run. (The server's one device line: test_serve_command.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import models

NATIVE_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "cuInit", "oneDNN", "cudart_stub", "I0000", "E0000")


def plain_environment() -> dict[str, str]:
    """The environment of a new user: nobody set TF_CPP_MIN_LOG_LEVEL."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


@pytest.mark.timeout(360)  # the subprocess's own 300 s end first, with its output
def test_a_local_audit_prints_the_report_and_nothing_else(tmp_path: Path) -> None:
    model = models.save(models.small_cnn(), tmp_path)
    command = [sys.executable, "-m", "layerscope.cli", "audit", str(model), "--format", "json", "-q"]
    done = subprocess.run(command, env=plain_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{")
    assert done.stderr == ""


PARENT = """
import sys
from layerscope.cli.app import app
try:
    app(["audit", *sys.argv[1:], "--jobs", "2", "--format", "json", "-q", "--fail-on", "never"])
except SystemExit as done:
    print("exit", done.code, "tensorflow in parent:", "tensorflow" in sys.modules, file=sys.stderr)
"""


@pytest.mark.timeout(360)  # the subprocess's own 300 s end first, with its output
def test_with_workers_only_the_workers_load_tensorflow_and_say_nothing(tmp_path: Path) -> None:
    command = [sys.executable, "-c", PARENT, str(models.save(models.small_cnn(), tmp_path))]
    done = subprocess.run(command, env=plain_environment(), capture_output=True, text=True, timeout=300)
    assert done.stderr.strip() == "exit 0 tensorflow in parent: False", done.stderr
