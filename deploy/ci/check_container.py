"""Checks a running layerscope container through the real client, as a user would; deploy/ci/container.sh runs it.

    python deploy/ci/check_container.py --target 127.0.0.1:PORT --metrics-url http://127.0.0.1:PORT/metrics \
        (--models healthy_cnn,dead_relu,... | --upload examples/models) [--prometheus http://127.0.0.1:PORT]

health, the models listed (those of the repository, or uploaded first), a Predict, an all-layer capture
(summaries and one full tensor), a diagnosis of every example that finds what it was built to show, the stored
runs, and /metrics; with --prometheus, that Prometheus scrapes the server as the alerts' job and has loaded
every rule of deploy/prometheus/alerts.yml. One line per check with its time; the first failure ends the run
with what was expected and what came back (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from layerscope.client import Client

EXPECTED_FINDINGS = {
    "healthy_cnn": None,  # no error-severity finding
    "dense_on_image": "dense-on-spatial",
    "softmax_one_unit": "softmax-single-unit",
    "nan_weights": "non-finite",
    "dead_relu": "dead-units",
}
"""What each example model was built to show (examples/build_examples.py)."""
ALERTS = Path(__file__).resolve().parents[1] / "prometheus" / "alerts.yml"
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


def run_checks(client: Client, models: list[str], metrics_url: str, upload: Path | None) -> None:
    check("health", lambda: _health(client))
    if upload is not None:
        archives = sorted(upload.glob("*.keras"))
        models = [archive.stem for archive in archives]
        check(f"upload {len(archives)} models", lambda: _upload(client, archives))
    check("list models", lambda: _listed(client, models))
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    check("predict healthy_cnn", lambda: _predict(client, x))
    run_ids: list[str] = []
    check("capture healthy_cnn (all layers, conv1 in full)", lambda: _capture(client, x, run_ids))
    for model in (m for m in models if m in EXPECTED_FINDINGS):
        check(f"diagnose {model}", partial(_diagnose, client, model))
    check("runs stored", lambda: _stored(client, run_ids[0]))
    check("metrics", lambda: _metrics(metrics_url))


def _health(client: Client) -> str:
    status = client.health()
    expect(status == "SERVING", "SERVING", status)
    return status


def _upload(client: Client, archives: list[Path]) -> str:
    infos = [client.upload_model(archive.stem, archive) for archive in archives]
    return ", ".join(f"{info.name} v{info.version}" for info in infos)


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


def prometheus_checks(url: str) -> None:
    check("prometheus scrapes the server", lambda: _scraped(url))
    check("prometheus loaded the rules", lambda: _rules(url))


def _api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as response:
        return json.load(response)["data"]


def _scraped(url: str) -> str:
    """The job alerts.yml selects (up{job="layerscope"}) is up; the first scrape may take a scrape interval."""
    deadline = time.monotonic() + 60
    while True:
        result = _api(url, "/api/v1/query?query=" + urllib.parse.quote('up{job="layerscope"}'))["result"]
        if result and result[0]["value"][1] == "1":
            return f'up{{job="layerscope", instance="{result[0]["metric"]["instance"]}"}} = 1'
        if time.monotonic() > deadline:
            expect(False, 'up{job="layerscope"} == 1 within 60 s', result)
        time.sleep(2)


def _rules(url: str) -> str:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    wanted = sorted(rule.get("alert") or rule["record"] for group in groups for rule in group["rules"])
    loaded = _api(url, "/api/v1/rules")["groups"]
    names = sorted(rule["name"] for group in loaded for rule in group["rules"])
    expect(names == wanted, f"the {len(wanted)} rules of {ALERTS.name}", names)
    unhealthy = [rule["name"] for group in loaded for rule in group["rules"] if rule.get("health") == "err"]
    expect(not unhealthy, "every rule evaluating", unhealthy)
    return f"{len(names)} rules in {len(loaded)} groups, none failing"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--metrics-url", required=True)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--models", help="comma-separated: the models the repository holds")
    models.add_argument("--upload", type=Path, help="a folder: upload its *.keras first (admin)")
    parser.add_argument("--prometheus", help="Prometheus's URL: check it scrapes the server and loaded the rules")
    arguments = parser.parse_args()
    with Client(arguments.target, timeout=300) as client:
        run_checks(client, (arguments.models or "").split(","), arguments.metrics_url, arguments.upload)
    if arguments.prometheus:
        prometheus_checks(arguments.prometheus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
