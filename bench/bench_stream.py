"""Full-tensor streaming throughput over loopback, through a real server and the real client.

    .venv/bin/python bench/bench_stream.py [--batch 32] [--repeats 5]

Captures every activation of the deep 64x64 CNN in full. The stream's transfer phase is timed from the
header (sent once the capture is computed) to the last chunk, so the figure is the transport's, not the
model's; the end-to-end time of `Client.capture` is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_capture import deep_cnn
from layerscope.client import Client
from layerscope.client._core import CaptureAssembler, capture_request
from tests.conftest import start_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024, help="server chunk size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = deep_cnn()
        path = Path(tmp) / "deep.keras"
        model.save(path)
        server = start_server(Path(tmp), max_tensor_bytes=2**31 - 1, chunk_bytes=args.chunk_kib * 1024)
        try:
            with Client(server.target, timeout=600) as c:
                c.upload_model("deep", path)
                x = np.random.default_rng(0).normal(size=(args.batch, 64, 64, 3)).astype("float32")
                c.capture("deep", x, layers="*", kinds=("activation",), full="*")  # warm up
                rates, totals, ends = [], [], []
                for _ in range(args.repeats):
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
        finally:
            server.stop()
    doc = {
        "batch": args.batch,
        "chunk_kib": args.chunk_kib,
        "tensor_megabytes": round(statistics.median(totals), 1),
        "stream_mb_per_s": round(statistics.median(rates), 1),
        "end_to_end_seconds": round(statistics.median(ends), 3),
    }
    print(json.dumps(doc))
    print(
        f"streamed {doc['tensor_megabytes']} MB at {doc['stream_mb_per_s']} MB/s "
        f"(end to end {doc['end_to_end_seconds']} s)"
    )


if __name__ == "__main__":
    main()
