"""`layerscope serve` as its own process, as it runs in production: its memory and its signals are its own."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

MODELS_SERVICE = "layerscope.models"
"""The health service that says SERVING once the models found at start have loaded (grpc/server.py)."""

ANNOUNCE = re.compile(r"serving on [^:]+:(\d+) \(metrics on :(\d+)")


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int
    database: Path
    log: Path
    stdout: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def rss_bytes(self) -> int:
        """The server's resident memory now (VmRSS), not a high-water mark."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                value, unit = line.split()[1:3]
                assert unit == "kB", line
                return int(value) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve_process(
    tmp: Path,
    env: Mapping[str, str] | None = None,
    start_timeout: float = 120.0,
    workers: bool = False,
    wait_for_models: bool = True,
) -> Iterator[ServeProcess]:
    """Start `layerscope serve` on free ports in `tmp`; kill it on the way out if it is still running.

    `workers`: run as shipped, inference in model worker processes; False (most tests) keeps it in the server,
    since every worker is a TensorFlow process of its own. `wait_for_models`: yield once the models in `tmp/models`
    have loaded (health's `layerscope.models` SERVING), not as soon as the server answers."""
    database = tmp / "runs.db"
    log = tmp / "serve.log"
    command = [sys.executable, "-m", "layerscope.cli", "serve", "--port", "0", "--metrics-port", "0",
               "--model-repository", str(tmp / "models"), "--database-url", f"sqlite:///{database}"]  # fmt: skip
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    if workers:
        environment.pop("LAYERSCOPE_MODEL_WORKERS", None)
    else:
        environment.setdefault("LAYERSCOPE_MODEL_WORKERS", "false")
    with log.open("w") as stderr:
        process = subprocess.Popen(command, env=environment, cwd=tmp, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        stdout = process.stdout
        assert stdout is not None
        first = _first_line(process, start_timeout)
        match = ANNOUNCE.search(first)
        assert match, f"expected 'serving on host:PORT (metrics on :PORT' first; got {first!r}\n{log.read_text()}"
        server = ServeProcess(process, int(match[1]), int(match[2]), database, log)
        # Nothing else should go to stdout, but a full pipe would block the server: drain it.
        threading.Thread(target=lambda: server.stdout.extend(stdout), daemon=True).start()
        if wait_for_models:
            wait_until_serving(server.target, MODELS_SERVICE, start_timeout)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                return process.stdout.readline()  # the announcement is printed whole and flushed
            if process.poll() is not None:
                break
    return ""


def wait_until_serving(target: str, service: str, timeout: float) -> float:
    """Ask the standard health service until `service` says SERVING; returns the seconds it took. A service the
    server does not know yet (NOT_FOUND) is asked again, as an orchestrator's probe would."""
    began = time.monotonic()
    channel = grpc.insecure_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - began < timeout:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - began
            except grpc.RpcError as err:
                if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
            time.sleep(0.05)
    finally:
        channel.close()
    raise AssertionError(f"expected health service {service!r} SERVING within {timeout:.0f}s; it was not")
