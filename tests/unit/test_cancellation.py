"""A call's cancellation reaches the worker thread doing its work, which stops at its next check."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest

from layerscope.service import cancellation
from layerscope.service.domain.selection import Selection
from layerscope.service.errors import Cancelled

T = TypeVar("T")


async def test_work_in_a_thread_stops_between_layers_once_its_call_has_ended() -> None:
    selection = Selection(layers=("dense*",))
    checked = threading.Event()
    release = threading.Event()

    def walk_layers() -> int:
        seen = 0
        for i in range(10_000):  # a model's layers, each looked at once, as the engine's loop does
            cancellation.check()
            selection.selects(f"dense_{i}", "Dense")
            seen += 1
            if i == 10:
                checked.set()
                release.wait(5)
        return seen

    async def call() -> int:
        flag = cancellation.start_call()
        work = asyncio.ensure_future(asyncio.to_thread(walk_layers))  # copies this context, flag included
        await asyncio.to_thread(checked.wait, 5)
        flag.set()  # what the transport does when the client cancels or the deadline passes
        release.set()
        return await work

    with pytest.raises(Cancelled, match="cancelled or passed its deadline"):
        await call()


def test_without_a_call_nothing_is_checked() -> None:
    cancellation.check()
    assert Selection().selects("dense", "Dense")


def ended_call(work: Callable[[], T]) -> T:
    """Runs `work` as the thread of a call that has already ended, in a context of its own (the flag must not
    outlive the test)."""

    def run() -> T:
        cancellation.start_call().set()
        return work()

    return contextvars.copy_context().run(run)


def test_selecting_a_layer_is_a_plain_predicate_that_checks_nothing() -> None:
    assert ended_call(lambda: Selection().selects("dense", "Dense"))  # the engine's loop checks, not the value


@pytest.mark.slow
def test_the_capture_engine_stops_at_its_next_layer_once_its_call_has_ended() -> None:
    import keras

    from layerscope.service.capture.engine import CaptureEngine

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d1"), keras.layers.Dense(1, name="d2")])
    engine = CaptureEngine(model)
    with pytest.raises(Cancelled, match="cancelled or passed its deadline"):
        ended_call(lambda: engine.capture({"x": np.zeros((2, 3), "float32")}, Selection()))
    assert engine.capture({"x": np.zeros((2, 3), "float32")}, Selection()).summaries  # a live call runs
