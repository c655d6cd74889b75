"""The demo shows the product's main job end to end: a server on free ports, uploads, a capture, diagnoses,
the run history, metrics, and a clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(360)  # the demo's own 300 s end first, with its output
def test_the_demo_runs_the_service_end_to_end_and_stops_it() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = [line for line in out.splitlines() if line.startswith("== ")]
    words = ["starting:", "server", "uploading", "capturing", "diagnosing", "watching", "run", "a", "server"]
    assert [s.split()[1] for s in steps] == words, steps
    assert "--database-url sqlite:///" in steps[0] and "--port 0" in steps[0]
    for model, finding in (("dense_on_image", "dense-on-spatial"), ("nan_weights", "non-finite")):
        assert any(line.split()[:1] == [model] and finding in line for line in out.splitlines()), out
    metrics = [line.split()[0] for line in out.splitlines() if line.startswith("  layerscope_")]
    assert any(m.startswith('layerscope_rpcs_total{code="OK"') for m in metrics), metrics
    assert "layerscope_models_loaded" in metrics and any(m.startswith("layerscope_model_findings") for m in metrics)
    assert "healthy_cnn:1" in out and "capture" in out  # the history lists the capture
    assert "steady traffic: window of" in out and "drifting: none" in out
    assert "first: conv1" in out, out  # the brightness shift is named where it enters the network
    assert steps[-1].startswith("== server stopped")
    assert "Traceback" not in done.stderr and done.stderr == "", done.stderr
    assert (ROOT / "scripts" / "demo.sh").read_text().count("scripts/demo.py") == 1
