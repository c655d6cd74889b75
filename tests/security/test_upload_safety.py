"""Uploads that end badly: a caller hanging up mid-way or just after the last chunk, a crash between staging
and publishing, uploads that stall, and loads Keras refuses. The previous version keeps serving, nothing
half-written is left, also after a restart; stalled uploads lose their slot and never lock out others."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from layerscope.client import Client
from layerscope.v1 import inspector_pb2_grpc, models_pb2
from tests.conftest import ServerHandle, start_server
from tests.support import models

CHUNK = 4096


def messages(
    name: str, archive: bytes, sent_all: threading.Event, stall: threading.Event | None = None
) -> Iterator[models_pb2.UploadModelRequest]:
    yield models_pb2.UploadModelRequest(header=models_pb2.UploadHeader(name=name, load=True))
    for offset in range(0, len(archive), CHUNK):
        if stall is not None and offset >= len(archive) // 2:
            sent_all.set()
            stall.wait(30)  # the caller goes quiet half-way
            return
        yield models_pb2.UploadModelRequest(chunk=archive[offset : offset + CHUNK])
    sent_all.set()


def leftovers(repository: Path, name: str) -> list[str]:
    """Anything in the model's folder that is not a published archive (or its markers)."""
    return sorted(
        str(p.relative_to(repository))
        for p in (repository / name).rglob("*")
        if p.is_file() and p.name not in ("model.keras", ".unloaded")
    )


def consistent(server: ServerHandle, c: Client, name: str) -> list[int]:
    """Every published version is loaded, and nothing else lies in the folder; returns the versions."""
    published = sorted(int(p.parent.name) for p in (server.repository / name).glob("*/model.keras"))
    loaded = sorted(m.version for m in c.list_models() if m.name == name)
    assert published == loaded, (published, loaded)
    assert leftovers(server.repository, name) == []
    return published


def test_a_caller_hanging_up_never_publishes_a_partial_or_unloaded_archive(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    archive = models.save(models.dead_relu_model(), tmp_path, "m").read_bytes()
    try:
        with Client(server.target, timeout=60) as c, grpc.insecure_channel(server.target) as channel:
            c.upload_model("m", tmp_path / "m.keras")
            stub = inspector_pb2_grpc.InspectorStub(channel)
            # Half-way: the caller stops sending, then hangs up.
            sent, stall = threading.Event(), threading.Event()
            call = stub.UploadModel.future(messages("m", archive, sent, stall))
            assert sent.wait(30)
            call.cancel()
            stall.set()
            # Just after the last chunk, at a few different moments: the window between staging and publishing.
            for delay in (0.0, 0.01, 0.05, 0.2):
                sent = threading.Event()
                call = stub.UploadModel.future(messages("m", archive, sent))
                assert sent.wait(30)
                time.sleep(delay)
                call.cancel()
            time.sleep(3)  # let every shielded install finish or roll back
            versions = consistent(server, c, "m")
            assert versions[0] == 1
            assert c.predict("m", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
    finally:
        server.stop()
    # A crash between staging and publishing leaves a staged file: after a restart it is gone, not served.
    (server.repository / "m" / "99").mkdir()
    (server.repository / "m" / "99" / ".staged-model.keras").write_bytes(archive[: len(archive) // 2])
    restarted = start_server(tmp_path)
    try:
        with Client(restarted.target, timeout=60) as c:
            # A start loads the newest published version of each model.
            assert [m.version for m in c.list_models() if m.name == "m"] == [max(versions)]
            assert leftovers(restarted.repository, "m") == []
            assert not (restarted.repository / "m" / "99").exists()
            assert c.predict("m", np.zeros((1, 4), "float32"))["out"].shape == (1, 2)
    finally:
        restarted.stop()


def test_stalled_uploads_lose_their_slot_and_never_lock_out_other_calls(tmp_path: Path) -> None:
    server = start_server(tmp_path, upload_idle_seconds=1.0, max_concurrent_uploads=2)
    archive = models.save(models.dead_relu_model(), tmp_path, "m").read_bytes()
    stall = threading.Event()
    try:
        with Client(server.target, timeout=60) as c, grpc.insecure_channel(server.target) as channel:
            c.upload_model("m", tmp_path / "m.keras")
            stub = inspector_pb2_grpc.InspectorStub(channel)
            calls = [stub.UploadModel.future(messages("s", archive, threading.Event(), stall), timeout=30)]
            time.sleep(0.2)
            calls += [stub.UploadModel.future(messages("s", archive, threading.Event(), stall), timeout=30)]
            time.sleep(0.2)
            calls += [stub.UploadModel.future(messages("s", archive, threading.Event(), stall), timeout=30)]
            time.sleep(0.3)
            assert [m.name for m in c.list_models()] == ["m"]  # uploads take no slot of the RPC cap
            assert c.health() == "SERVING"
            refused = [f for f in calls if f.done() and f.code() is grpc.StatusCode.RESOURCE_EXHAUSTED]
            assert len(refused) == 1 and "Expected at most 2 uploads in flight" in refused[0].details()
            stalled = [f for f in calls if f not in refused]
            for f in stalled:
                assert f.exception(timeout=10) is not None
                assert f.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                assert "Expected the client's next message within 1 s; received none" in f.details()
            assert leftovers(server.repository, "s") == [] and not (server.repository / "s" / "1").exists()
            assert c.upload_model("m", tmp_path / "m.keras").version == 2  # the slots are free again
    finally:
        stall.set()
        server.stop()


def test_a_trial_load_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The isolated trial runs with a temporary folder of its own, removed whether Keras loads or refuses."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    server = start_server(tmp_path / "server", isolated_loading=True)
    try:
        with Client(server.target, timeout=120) as c:
            good = models.save(models.dead_relu_model(), tmp_path, "good")
            assert c.upload_model("good", good).version == 1
            from tests.security.test_isolated_loading import weights_damaged

            with pytest.raises(Exception, match="Keras refused it"):
                c.upload_model("damaged", weights_damaged(tmp_path))
        assert sorted(p.name for p in scratch.iterdir()) == []
    finally:
        server.stop()
