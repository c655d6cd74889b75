"""The demo: what layerscope is for, in about a minute on a laptop CPU.

Starts a server on free ports with the embedded SQLite default, uploads the example models, captures one,
diagnoses each, watches live Predict traffic (a reference, then a brightness shift that a drifting layer
names), prints a short run history and a few of the server's Prometheus metrics, then stops it.
Run it through `bash scripts/demo.sh` (which installs first) or as `.venv/bin/python scripts/demo.py`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from layerscope.client import Client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "models"
ANNOUNCE = re.compile(r"serving on [^:]+:(\d+) \(metrics on :(\d+)")
METRICS = (
    "layerscope_rpcs_total",
    "layerscope_models_loaded",
    "layerscope_model_findings",
    "layerscope_layer_dead_unit_fraction",
    "layerscope_monitor_samples_total",
    "layerscope_model_first_drifting_layer",
)
# Monitoring at demo speed: every other request sampled, 2-second windows, a reference of 40 requests (the
# defaults are 5%, 300 s and 200: see the README's settings).
LIVE = {
    "LAYERSCOPE_MONITOR_SAMPLE_RATE": "0.5",
    "LAYERSCOPE_MONITOR_WINDOW_SECONDS": "2",
    "LAYERSCOPE_MONITOR_REFERENCE_REQUESTS": "40",
    "LAYERSCOPE_MONITOR_CPU_BUDGET": "1.0",
}


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="layerscope-demo-") as tmp:
        server = start_server(Path(tmp))
        try:
            port, metrics_port = announced_ports(server)
            step(f"server up on 127.0.0.1:{port}, metrics on :{metrics_port}, runs in {tmp}/runs.db")
            with Client(f"127.0.0.1:{port}", timeout=120) as client:
                tour(client)
                step("watching live Predict traffic: no capture call, just requests (layerscope monitor)")
                watch(client, f"127.0.0.1:{port}")
            step("run history (layerscope runs)")
            cli("runs", "--limit", "8", "--server", f"127.0.0.1:{port}")
            step(f"a few metrics from http://127.0.0.1:{metrics_port}/metrics")
            print_metrics(metrics_port)
        finally:
            stop(server)
    step(f"server stopped; demo took {time.perf_counter() - started:.0f} s")
    return 0


def start_server(tmp: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "layerscope.cli", "serve", "--port", "0", "--metrics-port", "0",
               "--model-repository", str(tmp / "models"), "--database-url", f"sqlite:///{tmp / 'runs.db'}"]  # fmt: skip
    step("starting: " + " ".join(["layerscope", *command[3:]]))
    log = (tmp / "server.log").open("w")
    env = {**os.environ, **LIVE}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=tmp, env=env)


def announced_ports(server: subprocess.Popen[str]) -> tuple[int, int]:
    assert server.stdout is not None
    line = server.stdout.readline()
    match = ANNOUNCE.search(line)
    if not match:
        raise SystemExit(f"the server did not start: {line!r}")
    return int(match[1]), int(match[2])


def tour(client: Client) -> None:
    step("uploading the example models (one healthy, the others broken on purpose)")
    for path in sorted(EXAMPLES.glob("*.keras")):
        info = client.upload_model(path.stem, path)
        print(f"  {info.name} v{info.version}: {info.parameters} parameters, {len(info.layers)} layers")

    step("capturing healthy_cnn on a random batch: per-layer summaries, computed next to the forward pass")
    (model,) = [m for m in client.list_models() if m.name == "healthy_cnn"]
    shape = tuple(8 if d is None else d for d in model.inputs[0].shape)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    capture = client.capture("healthy_cnn", x, layers="*", kinds=("activation", "kernel"))
    for layer, kinds in list(capture.summaries.items())[:5]:
        s = kinds.get("activation") or next(iter(kinds.values()))
        print(f"  {layer:<16} mean {s.mean:+.3f}  std {s.std:.3f}  zeros {s.zero_fraction:.0%}")
    print(f"  ... run {capture.run_id} stored with {len(capture.summaries)} layers")

    step("diagnosing every model (static rules, then a forward pass on probe inputs)")
    for info in sorted(client.list_models(), key=lambda m: m.name):
        report = client.diagnose(info.name)
        worst = ", ".join(f"{f.severity} {f.code}" for f in report.findings[:2]) or "clean"
        print(f"  {info.name:<18} {worst}")


def watch(client: Client, target: str) -> None:
    """Steady traffic makes the reference; brighter images (a camera change, say) drift, first where they
    enter the network."""
    rng = np.random.default_rng(1)

    def traffic(seconds: float, brightness: float = 0.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            client.predict("healthy_cnn", (rng.random((16, 28, 28, 1)) + brightness).astype("float32"))

    traffic(3.0)
    while client.monitor("healthy_cnn").reference is None:
        traffic(0.5)
    print(f"  reference made from {client.monitor('healthy_cnn').reference.requests} sampled requests")  # type: ignore[union-attr]
    traffic(2.5)
    window = client.monitor("healthy_cnn").windows[0]
    print(f"  steady traffic: window of {window.requests} requests, drifting: {window.first_drifting_layer or 'none'}")
    for _ in range(4):
        traffic(2.5, brightness=0.5)
        window = client.monitor("healthy_cnn").windows[0]
        if window.first_drifting_layer:
            break
    print(f"  brighter images: drifting {', '.join(window.drifting)}; first: {window.first_drifting_layer}")
    cli("monitor", "healthy_cnn", "--server", target, "--once")


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "layerscope.cli", *args], check=True, env={**os.environ, "COLUMNS": "100"})


def print_metrics(port: int) -> None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for name in METRICS:
        for line in [line for line in text.splitlines() if line.startswith(name)][:3]:
            print("  " + line)


def stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
