"""Checks a running layerscope container through the real client, as a user would; deploy/ci/container.sh runs it.

    python deploy/ci/check_container.py --target 127.0.0.1:PORT --metrics-url http://127.0.0.1:PORT/metrics \
        --models healthy_cnn,dead_relu,...

health, the models listed, a Predict, an all-layer capture (summaries and one full tensor), a diagnosis of every
example that finds what it was built to show, the stored runs, and /metrics. One line per check with its
time; the first failure ends the run with what was expected and what came back (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from collections.abc import Callable

import numpy as np

from layerscope.client import Client

EXPECTED_FINDINGS = {
    "healthy_cnn": None,  # no error-severity finding
    "dense_on_image": "dense-on-spatial",
    "softmax_one_unit": "softmax-single-unit",
    "nan_weights": "non-finite",
    "dead_relu": "dead-units",
}
"""What each example model was built to show (examples/build_examples.py)."""
METRICS = ('layerscope_rpcs_total{code="OK",method="Capture"}', "layerscope_models_loaded", "layerscope_layer_")


class CheckFailed(Exception):
    pass


def expect(condition: bool, expected: str, received: object) -> None:
    if not condition:
        raise CheckFailed(f"expected {expected}; received {received!r}")


def check(name: str, body: Callable[[], str]) -> None:
    started = time.perf_counter()
    try:
        detail = body()
    except Exception as error:
        print(f"  FAIL {name} ({time.perf_counter() - started:.2f} s): {type(error).__name__}: {error}", flush=True)
        raise SystemExit(1) from None
    print(f"  ok   {name} ({time.perf_counter() - started:.2f} s): {detail}", flush=True)


def run_checks(client: Client, models: list[str], metrics_url: str) -> None:
    check("health", lambda: _health(client))
    check("list models", lambda: _listed(client, models))
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    check("predict healthy_cnn", lambda: _predict(client, x))
    run_ids: list[str] = []
    check("capture healthy_cnn (all layers, conv1 in full)", lambda: _capture(client, x, run_ids))
    for model in (m for m in models if m in EXPECTED_FINDINGS):
        check(f"diagnose {model}", lambda model=model: _diagnose(client, model))  # type: ignore[misc]
    check("runs stored", lambda: _stored(client, run_ids[0]))
    check("metrics", lambda: _metrics(metrics_url))


def _health(client: Client) -> str:
    status = client.health()
    expect(status == "SERVING", "SERVING", status)
    return status


def _listed(client: Client, models: list[str]) -> str:
    listed = sorted(info.name for info in client.list_models())
    expect(listed == sorted(models), f"the repository's models {sorted(models)}", listed)
    return f"{len(listed)} models"


def _predict(client: Client, x: np.ndarray) -> str:
    outputs = client.predict("healthy_cnn", x)
    (output,) = outputs.values()
    expect(output.shape == (8, 10), "one row of 10 class probabilities per input", output.shape)
    expect(bool(np.allclose(output.sum(axis=1), 1.0, atol=1e-4)), "softmax rows summing to 1", output.sum(axis=1))
    return f"outputs {output.shape}"


def _capture(client: Client, x: np.ndarray, run_ids: list[str]) -> str:
    capture = client.capture("healthy_cnn", x, layers="*", full=["conv1"])
    layers = {"conv1", "pool1", "conv2", "gap", "classes"}
    expect(layers <= set(capture.summaries), f"summaries of {sorted(layers)}", sorted(capture.summaries))
    tensor = capture.tensors["conv1"]["activation"]
    expect(tensor.shape == (8, 26, 26, 8), "conv1's activation in full, (8, 26, 26, 8)", tensor.shape)
    summary = capture.summaries["conv1"]["activation"]
    expect(summary.count == tensor.size, f"a summary of all {tensor.size} values", summary.count)
    expect(abs(summary.mean - float(tensor.mean())) < 1e-4, f"the tensor's mean {tensor.mean():.6f}", summary.mean)
    run_ids.append(capture.run_id)
    return f"run {capture.run_id}, {len(capture.summaries)} layers"


def _diagnose(client: Client, model: str) -> str:
    report = client.diagnose(model)
    codes = sorted({f.code for f in report.findings})
    errors = [f.code for f in report.findings if f.severity == "error"]
    wanted = EXPECTED_FINDINGS[model]
    if wanted is None:
        expect(not errors, "no error-severity finding", errors)
    else:
        expect(wanted in codes, f"the finding {wanted}", codes)
    return ", ".join(codes) or "clean"


def _stored(client: Client, run_id: str) -> str:
    runs = client.runs("healthy_cnn", limit=50)
    expect(run_id in {run.run_id for run in runs}, f"the capture's run {run_id} among the stored runs", len(runs))
    return f"{len(runs)} runs of healthy_cnn"


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    missing = [name for name in METRICS if name not in text]
    expect(not missing, f"series {list(METRICS)}", f"missing {missing}")
    return f"{len(text.splitlines())} lines"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--metrics-url", required=True)
    parser.add_argument("--models", required=True, help="comma-separated: the models the repository holds")
    arguments = parser.parse_args()
    with Client(arguments.target, timeout=300) as client:
        run_checks(client, arguments.models.split(","), arguments.metrics_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
