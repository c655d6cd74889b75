"""The worker's wire: whole messages over a socket pair, framed, large arrays through shared memory."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from layerscope.service.workers.main import _serve
from layerscope.service.workers.protocol import Call, Done, Failed
from layerscope.service.workers.transport import INLINE_BYTES, SHM_DIR, Inbox, Outbox, remove_blocks
from layerscope.service.workers.wire import BUFFER_BYTES, Wire

PREFIX = f"layerscope-wire-test-{os.getpid()}"


@pytest.fixture()
def ends() -> Iterator[tuple[Wire, Wire]]:
    """A server's and a worker's end, each with its own block prefix, as `WorkerProcess` and the worker make them."""
    ours, theirs = socket.socketpair()
    ours.settimeout(30)  # a test whose answer never comes fails rather than hangs
    yield Wire(ours, Outbox(f"{PREFIX}-in"), Inbox()), Wire(theirs, Outbox(PREFIX), Inbox())
    remove_blocks(PREFIX)
    remove_blocks(f"{PREFIX}-in")


def blocks() -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"{PREFIX}*"))


def test_a_call_and_its_answer_cross_as_themselves(ends: tuple[Wire, Wire]) -> None:
    server, worker = ends
    x = np.random.default_rng(0).standard_normal((32, 28, 28, 1)).astype("float32")  # 100 KB: out of band
    server.send(Call("predict", ("digits", 1), ({"x": x},), {"statistics": "exact"}))
    with worker.opened() as call:
        assert isinstance(call, Call) and call.method == "predict" and call.model == ("digits", 1)
        viewed = call.args[0]["x"]
        assert viewed.base is not None, "the worker reads the inputs where the server put them"
        np.testing.assert_array_equal(viewed, x)
        assert call.kwargs == {"statistics": "exact"}
        worker.send(Done({"y": viewed * 2, "small": np.arange(3)}, 0.25))
        del call, viewed
    done = server.receive()
    assert isinstance(done, Done) and done.seconds == 0.25
    np.testing.assert_array_equal(done.result["y"], x * 2)
    assert done.result["y"].flags.writeable, "the server's copy is its own"
    assert [b for b in blocks() if not b.startswith(f"{PREFIX}-in")], "the large answer used the worker's block"


def test_received_arrays_outlive_the_next_message(ends: tuple[Wire, Wire]) -> None:
    server, worker = ends
    first = np.arange(100, dtype="float64")  # inline: inside the pickle, which the next frame overwrites
    large = np.ones(INLINE_BYTES, dtype="float64")  # out of band: in the block, which the next message reuses
    worker.send(Done({"a": first, "b": large}, 0.0))
    kept = server.receive().result
    worker.send(Done({"a": -first, "b": -large}, 0.0))
    again = server.receive().result
    np.testing.assert_array_equal(kept["a"], first)
    np.testing.assert_array_equal(kept["b"], large)
    np.testing.assert_array_equal(again["b"], -large)


def test_frames_sent_before_any_is_read_arrive_in_order(ends: tuple[Wire, Wire]) -> None:
    server, worker = ends
    for i in range(5):
        worker.send(Done(i, float(i)))
    assert [server.receive().result for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_frame_larger_than_the_buffer_crosses_and_the_buffer_shrinks_after(ends: tuple[Wire, Wire]) -> None:
    server, worker = ends
    strided = np.arange(4 * BUFFER_BYTES, dtype="int16")[::2]  # not contiguous: travels inside the pickle
    text = "x" * (3 * BUFFER_BYTES)
    sender = threading.Thread(target=worker.send, args=(Done({"strided": strided, "text": text}, 0.0),))
    sender.start()  # larger than the socket's buffer: the sender blocks until the reader takes it
    received = server.receive().result
    sender.join()
    np.testing.assert_array_equal(received["strided"], strided)
    assert received["text"] == text
    assert len(server._buffer) == BUFFER_BYTES, "one huge message does not keep its buffer"
    worker.send(Done("after", 0.0))
    assert server.receive().result == "after"


@pytest.mark.usefixtures("ends")  # removes the blocks after
def test_a_frame_arriving_a_few_bytes_at_a_time_is_put_together() -> None:
    peer_socket, peer = socket.socketpair()
    local = Wire(peer_socket, Outbox(PREFIX), Inbox())
    outbox = Outbox(f"{PREFIX}-drip")
    frame = _frame_bytes(outbox, Done({"z": np.arange(20_000.0)}, 1.5))

    def drip() -> None:
        for i in range(0, len(frame), 7):
            peer.sendall(frame[i : i + 7])

    thread = threading.Thread(target=drip)
    thread.start()
    done = local.receive()
    thread.join()
    assert done.seconds == 1.5
    np.testing.assert_array_equal(done.result["z"], np.arange(20_000.0))
    outbox.close()
    peer.close()


@pytest.mark.usefixtures("ends")
def test_a_peer_gone_in_the_middle_of_a_frame_is_end_of_file() -> None:
    peer_socket, peer = socket.socketpair()
    local = Wire(peer_socket, Outbox(PREFIX), Inbox())
    frame = _frame_bytes(Outbox(PREFIX), Done("cut short", 0.0))
    peer.sendall(frame[: len(frame) // 2])
    peer.close()
    with pytest.raises(EOFError):
        local.receive()


def test_a_peer_gone_between_frames_is_end_of_file_and_sending_to_it_fails(ends: tuple[Wire, Wire]) -> None:
    server, worker = ends
    worker.discard()  # a worker whose server is gone: its socket closed, both blocks unlinked
    with pytest.raises(EOFError):
        server.receive()
    with pytest.raises(OSError):
        server.send(Call("predict", ("m", 1), (), {}))
    assert not blocks()


class _Engine:
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    def run(self, request: Any) -> Any:
        return lambda: request  # a result that does not pickle


def test_the_worker_answers_a_result_that_cannot_cross_with_its_failure_and_serves_on(
    ends: tuple[Wire, Wire],
) -> None:
    server, worker = ends
    models = SimpleNamespace(engines={("m", 1): _Engine()}, memory_limit=None)
    loop = threading.Thread(target=_serve, args=(worker, models))
    loop.start()
    server.send(Call("run", ("m", 1), (None,), {}))
    failed = server.receive()
    assert isinstance(failed, Failed) and failed.error is None and "pickle" in failed.summary
    server.send(Call("predict", ("m", 1), ({"x": np.ones(INLINE_BYTES)},), {}))
    np.testing.assert_array_equal(server.receive().result["y"], np.full(INLINE_BYTES, 2.0))
    server.discard()  # the server is gone: the loop ends and unlinks what is left
    loop.join(timeout=10)
    assert not loop.is_alive() and not blocks()


def _frame_bytes(outbox: Outbox, message: object) -> bytes:
    """The bytes a wire reads for `message` sent by a peer with `outbox`."""
    a, b = socket.socketpair()
    sender = Wire(a, outbox, Inbox())
    sender.send(message)
    del sender  # its socket closes with it: b reads the frame, then end of file
    chunks = []
    while chunk := b.recv(1 << 20):
        chunks.append(chunk)
    b.close()
    return b"".join(chunks)
