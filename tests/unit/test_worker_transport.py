"""The pieces of the model workers that need no worker: shared-memory transport, restart policy, causes."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import numpy as np
import pytest

from layerscope.service.workers.policy import RestartPolicy
from layerscope.service.workers.process import describe_exit
from layerscope.service.workers.transport import INLINE_BYTES, SHM_DIR, Inbox, Outbox, remove_blocks

PREFIX = f"layerscope-test-{os.getpid()}"


@dataclass
class Result:
    outputs: dict[str, np.ndarray]
    small: np.ndarray
    extra: list[object] = field(default_factory=list)


def blocks() -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"{PREFIX}*"))


def test_small_messages_travel_inline() -> None:
    packed = Outbox(PREFIX).pack({"x": np.arange(10, dtype="float32")})
    assert packed.block is None and not blocks()
    np.testing.assert_array_equal(Inbox().unpack(packed)["x"], np.arange(10, dtype="float32"))


def test_large_arrays_cross_in_the_senders_block() -> None:
    big = np.random.default_rng(0).standard_normal((300, 301)).astype("float32")
    fortran = np.asfortranarray(np.arange(40_000, dtype="int32").reshape(200, 200))
    message = Result({"a": big, "b": big[::-1].copy()}, np.ones(3), ["label", ("t", fortran)])
    outbox, inbox = Outbox(PREFIX), Inbox()
    packed = outbox.pack(message)
    assert len(packed.slots) == 3 and packed.shared_bytes == 2 * big.nbytes + fortran.nbytes
    assert all(slot.offset % 64 == 0 for slot in packed.slots)
    assert len(packed.pickle) < 1024  # the arrays are not in the pickle
    assert blocks() == [packed.block]
    received = inbox.unpack(packed)
    np.testing.assert_array_equal(received.outputs["a"], big)
    np.testing.assert_array_equal(received.outputs["b"], big[::-1])
    np.testing.assert_array_equal(received.extra[1][1], fortran)
    assert received.extra[1][1].flags.f_contiguous, "the layout survives the crossing"
    assert received.outputs["a"].flags.writeable and received.extra[0] == "label"
    again = outbox.pack({"x": big * 2})
    assert again.block == packed.block  # reused: its pages are mapped already
    np.testing.assert_array_equal(inbox.unpack(again)["x"], big * 2)
    np.testing.assert_array_equal(received.outputs["a"], big)  # what was received is its own copy
    outbox.close()
    inbox.unlink()
    assert not blocks()


def test_a_large_non_contiguous_array_travels_inside_the_pickle() -> None:
    odd = np.arange(70_000, dtype="int16")[::2]  # a strided view: pickle copies it, so it travels inline
    packed = Outbox(PREFIX).pack({"odd": odd, "big": np.ones(20_000)})
    assert len(packed.slots) == 1 and packed.shared_bytes == 160_000
    received = Inbox().unpack(packed)
    np.testing.assert_array_equal(received["odd"], odd)
    remove_blocks(PREFIX)


def test_a_block_grows_and_shrinks_with_its_messages() -> None:
    outbox, inbox = Outbox(PREFIX), Inbox()
    small = outbox.pack({"x": np.ones(100_000)})
    large = outbox.pack({"x": np.ones(5_000_000)})  # 40 MB: more than the block holds
    assert large.block != small.block and blocks() == [large.block]
    np.testing.assert_array_equal(inbox.unpack(large)["x"], np.ones(5_000_000))
    shrunk = outbox.pack({"x": np.ones(100_000)})  # far smaller than 40 MB: memory is given back
    assert shrunk.block != large.block and blocks() == [shrunk.block]
    np.testing.assert_array_equal(inbox.unpack(shrunk)["x"], np.ones(100_000))
    outbox.close()
    assert not blocks()


def test_opened_gives_views_for_the_call() -> None:
    big = np.full((200, 200), 7.0)
    outbox, inbox = Outbox(PREFIX), Inbox()
    with inbox.opened(outbox.pack(([big], {"statistics": "exact"}))) as (args, kwargs):
        assert args[0].base is not None and float(args[0].sum()) == 7.0 * big.size
        assert kwargs == {"statistics": "exact"}
        del args
    inbox.unlink()  # a worker whose server is gone removes the server's block
    assert not blocks()


def test_blocks_left_by_a_dead_sender_are_removed_by_prefix() -> None:
    Outbox(PREFIX).pack({"x": np.zeros(INLINE_BYTES)})
    Outbox(PREFIX).pack({"x": np.zeros(INLINE_BYTES)})
    assert len(blocks()) == 2
    assert remove_blocks(PREFIX) == 2 and not blocks()


def test_restarts_back_off_and_give_up_after_max_crashes_within_the_window() -> None:
    now = [0.0]
    policy = RestartPolicy(max_crashes=4, window_seconds=60, first_backoff=0.5, max_backoff=1.5, clock=lambda: now[0])
    assert [policy.crashed(), policy.crashed(), policy.crashed()] == [0.5, 1.0, 1.5]
    now[0] = 100.0  # the window has passed: the count starts again
    assert policy.crashed() == 0.5 and policy.recent == 1
    for _ in range(2):
        policy.crashed()
    assert policy.crashed() is None


def test_restart_policy_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="max_crashes >= 1"):
        RestartPolicy(max_crashes=0, window_seconds=1)


def test_causes_name_the_signal_and_the_memory_limit() -> None:
    killed = describe_exit(-signal.SIGKILL, None)
    assert killed.label == "SIGKILL" and "out-of-memory killer" in killed.text
    crashed = describe_exit(-signal.SIGSEGV, 256 * 2**20)
    assert crashed.label == "SIGSEGV" and "memory limit of 256 MiB" in crashed.text
    assert "memory limit" not in describe_exit(-signal.SIGSEGV, None).text
    assert describe_exit(3, None) == describe_exit(3, 1) and describe_exit(3, None).label == "exit"
