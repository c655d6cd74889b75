"""Full-tensor streaming throughput over loopback, through a real server and the real client.

    .venv/bin/python bench/bench_stream.py [--batch 32] [--repeats 5] [--chunk-kib 1024]

Captures every activation of the deep 64x64 CNN in full, twice over: with the server in this process (a
thread, as the integration tests run it: client and server share one interpreter and its GIL) and with
the server as its own `layerscope serve` process (how it is deployed). The stream's transfer phase is
timed from the header (sent once the capture is computed) to the last chunk, so the figure is the
transport's, not the model's; the end-to-end time of `Client.capture` is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_capture import deep_cnn
from layerscope.client import Client
from layerscope.client._core import CaptureAssembler, capture_request
from tests.conftest import start_server

LIMITS = {"max_tensor_bytes": 2**31 - 1}


@contextmanager
def in_process(folder: Path, chunk_bytes: int) -> Iterator[str]:
    server = start_server(folder, chunk_bytes=chunk_bytes, **LIMITS)
    try:
        yield server.target
    finally:
        server.stop()


@contextmanager
def own_process(folder: Path, chunk_bytes: int) -> Iterator[str]:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "LAYERSCOPE_CHUNK_BYTES": str(chunk_bytes),
        "LAYERSCOPE_MAX_TENSOR_BYTES": str(LIMITS["max_tensor_bytes"]),
    }
    database = f"sqlite:///{folder / 'runs.db'}"
    command = [sys.executable, "-m", "layerscope.cli", "serve", "--port", "0", "--metrics-port", "0",
               "--model-repository", str(folder / "repository"), "--database-url", database]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        match = re.search(r"serving on [^:]+:(\d+)", process.stdout.readline())
        assert match, "the server did not say where it listens"
        address = f"127.0.0.1:{match[1]}"
        wait_until_models_loaded(address)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until_models_loaded(address: str, seconds: float = 600) -> None:
    """The server says SERVING once it can answer; its repository's models load behind that."""
    deadline = time.monotonic() + seconds
    with Client(address, timeout=30) as client:
        while client.health("layerscope.models") != "SERVING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the repository's models did not load within {seconds:.0f} s")
            time.sleep(0.2)


def measure(target: str, archive: Path, batch: int, repeats: int) -> dict[str, float]:
    with Client(target, timeout=600) as c:
        c.upload_model("deep", archive)
        x = np.random.default_rng(0).normal(size=(batch, 64, 64, 3)).astype("float32")
        c.capture("deep", x, layers="*", kinds=("activation",), full="*")  # warm up
        rates, totals, ends = [], [], []
        for _ in range(repeats):
            request = capture_request("deep", x, "*", ("activation",), "*", None, None, 0)
            assembler = CaptureAssembler()
            started = time.perf_counter()
            header_at = None
            for message in c._stub.Capture(request, timeout=600):
                if header_at is None:
                    header_at = time.perf_counter()
                assembler.add(message)
            done = time.perf_counter()
            cap = assembler.result()
            size = sum(a.nbytes for kinds in cap.tensors.values() for a in kinds.values())
            assert header_at is not None
            rates.append(size / (done - header_at) / 1e6)
            totals.append(size / 1e6)
            ends.append(done - started)
    return {
        "tensor_megabytes": round(statistics.median(totals), 1),
        "stream_mb_per_s": round(statistics.median(rates), 1),
        "end_to_end_seconds": round(statistics.median(ends), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024, help="server chunk size")
    args = parser.parse_args()
    doc: dict[str, Any] = {"batch": args.batch, "chunk_kib": args.chunk_kib, "servers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "deep.keras"
        deep_cnn().save(archive)
        for name, start in (("in_process", in_process), ("own_process", own_process)):
            folder = Path(tmp) / name
            folder.mkdir()
            with start(folder, args.chunk_kib * 1024) as target:
                doc["servers"][name] = measure(target, archive, args.batch, args.repeats)
    print(json.dumps(doc))
    for name, figures in doc["servers"].items():
        print(
            f"{name:12} streamed {figures['tensor_megabytes']} MB at {figures['stream_mb_per_s']} MB/s "
            f"(end to end {figures['end_to_end_seconds']} s)"
        )


if __name__ == "__main__":
    main()
