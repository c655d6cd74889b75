"""`layerscope serve` as a user runs it: flags and environment, a free port, health, and a clean SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from layerscope.client import Client

NATIVE_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "cuInit", "oneDNN", "cudart_stub", "I0000", "E0000")


def test_serve_on_a_free_port_answers_health_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {  # as a new user starts it: nobody set TF_CPP_MIN_LOG_LEVEL
        **{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        "LAYERSCOPE_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}",
    }
    command = [
        sys.executable, "-m", "layerscope.cli", "serve",
        "--port", "0", "--metrics-port", "0", "--model-repository", str(tmp_path / "models"),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving on 127\.0\.0\.1:(\d+) \(metrics on :(\d+)", line)
        assert match, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        with Client(f"127.0.0.1:{match[1]}", timeout=30) as c:
            assert c.health() == "SERVING"
            assert c.list_models() == []
        assert (tmp_path / "env.db").exists()  # the database URL came from the environment
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert process.stderr is not None
        log = process.stderr.read().splitlines()
        # The devices in one line; none of TensorFlow's native start-up lines (cuInit, CPU features, oneDNN).
        assert [line.split(" INFO ", 1)[-1] for line in log if "devices:" in line] == ["layerscope: devices: CPU only"]
        assert [line for line in log if any(noise in line for noise in NATIVE_NOISE)] == [], log
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_help_names_each_flag_with_its_variable_and_the_real_default() -> None:
    from typer.testing import CliRunner

    from layerscope.cli.app import app
    from layerscope.service.settings import Settings

    text = " ".join(CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "300"}).stdout.split())
    for field in ("host", "port", "metrics_port", "model_repository", "database_url"):
        default = Settings.model_fields[field].default
        assert f"--{field.replace('_', '-')}" in text
        assert f"(env LAYERSCOPE_{field.upper()}; default {default})" in text


def test_a_shutdown_that_outlives_its_deadline_dumps_every_stack_and_exits_1() -> None:
    """The watchdog behind SIGTERM: a stuck shutdown must end, and say where it was stuck."""
    stuck = "from layerscope.service.app import _exit_if_stuck; import time; _exit_if_stuck(1.0); time.sleep(60)"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", stuck], capture_output=True, text=True, timeout=50)
    assert done.returncode == 1 and time.monotonic() - started < 30
    assert "shutdown did not finish within 1s; thread stacks follow, then exit 1" in done.stderr
    assert 'File "<string>", line 1' in done.stderr  # the main thread's stack: where it was stuck
