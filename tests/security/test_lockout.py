"""One reader must not lock out everyone: 64 Capture streams of large full tensors, opened and never read.

The server runs as its own process, so its memory is its own. Throughout, health Check, OIP ServerReady and
ListModels answer from another connection; the caller gets only its share of streams (the rest are refused
with RESOURCE_EXHAUSTED naming the per-caller limit); the stalled ones end after the idle timeout, and the
memory they held is returned.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerscope.client import Client
from layerscope.client import _core as core
from layerscope.oip import grpc_predict_v2_pb2 as oip_pb2
from layerscope.oip import grpc_predict_v2_pb2_grpc as oip_grpc
from layerscope.v1 import inspector_pb2_grpc, models_pb2
from tests.support import models
from tests.support.serve_process import ServeProcess, serve_process

STREAMS = 64
PER_CALLER = 8
IDLE_SECONDS = 5
BATCH = 32
WIDTH = 1 << 16  # 32 x 65,536 float32: 8 MiB of full activations per stream


def separate_channel(target: str) -> grpc.Channel:
    """A connection of its own: unread streams fill their connection's flow-control window, not this one's."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {
        "LAYERSCOPE_ISOLATED_LOADING": "false",
        "LAYERSCOPE_MAX_STREAMS_PER_CALLER": str(PER_CALLER),
        "LAYERSCOPE_STREAM_IDLE_SECONDS": str(IDLE_SECONDS),
    }
    tmp = tmp_path_factory.mktemp("lockout")
    with serve_process(tmp, env=env) as process:
        x = keras.Input((8,), name="x")
        hidden = keras.layers.Dense(WIDTH, name="wide")(x)
        wide = keras.Model(x, keras.layers.Dense(1, name="out")(hidden), name="wide")
        with Client(process.target, timeout=60) as client:
            client.upload_model("wide", models.save(wide, Path(tmp), "wide"))
        yield process


def test_stalled_capture_streams_lock_out_no_one(server: ServeProcess) -> None:
    request = core.capture_request("wide", np.ones((BATCH, 8), "float32"), "*", ["activation"], "wide", None, None, 0)
    probe = separate_channel(server.target)
    health = health_pb2_grpc.HealthStub(probe)
    oip = oip_grpc.GRPCInferenceServiceStub(probe)
    inspector = inspector_pb2_grpc.InspectorStub(probe)
    baseline = server.rss_bytes()

    attacker = separate_channel(server.target)
    stub = inspector_pb2_grpc.InspectorStub(attacker)
    calls = [stub.Capture(request, timeout=60) for _ in range(STREAMS)]  # opened, never read
    answered, peak = 0, baseline
    until = time.monotonic() + IDLE_SECONDS + 3
    while time.monotonic() < until:  # the stalled streams hold their slots, then the idle timeout ends them
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert oip.ServerReady(oip_pb2.ServerReadyRequest(), timeout=5).ready
        assert inspector.ListModels(models_pb2.ListModelsRequest(), timeout=5).models
        answered += 1
        peak = max(peak, server.rss_bytes())
        time.sleep(0.2)
    refused = [call for call in calls if call.done() and call.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]
    # The first PER_CALLER are admitted and stall; on a slow machine a few late ones may find a slot that
    # the idle timeout freed meanwhile, and stall in turn.
    assert STREAMS - 2 * PER_CALLER <= len(refused) <= STREAMS - PER_CALLER, [c.done() and c.code() for c in calls]
    assert f"Expected at most {PER_CALLER} open streams per caller" in refused[0].details()

    # The server gave the stalled streams' slots back: the same caller may capture again, and reads it all.
    again = list(inspector_pb2_grpc.InspectorStub(separate_channel(server.target)).Capture(request, timeout=30))
    assert again[0].HasField("header") and len(again) > 2
    after = server.rss_bytes()
    print(f"rss: baseline {baseline >> 20} MiB, peak {peak >> 20} MiB, after {after >> 20} MiB; {answered} probes")
    assert answered >= 5
    assert after - baseline < 256 << 20, (baseline, peak, after)
    attacker.close()
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    probe.close()
