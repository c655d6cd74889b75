"""A call's cancellation reaches the worker thread doing its work, which stops at its next check."""

from __future__ import annotations

import asyncio
import threading

import pytest

from layerscope.service import cancellation
from layerscope.service.capture.selection import Selection
from layerscope.service.errors import Cancelled


async def test_work_in_a_thread_stops_between_layers_once_its_call_has_ended() -> None:
    selection = Selection(layers=("dense*",))
    checked = threading.Event()
    release = threading.Event()

    def walk_layers() -> int:
        seen = 0
        for i in range(10_000):  # a model's layers, each looked at once
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
    assert Selection().selects("dense", "Dense")
