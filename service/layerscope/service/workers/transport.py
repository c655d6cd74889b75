"""Moving call arguments and results between processes without pickling large arrays.

A message is pickled with protocol 5's out-of-band buffers: every contiguous NumPy array above `INLINE_BYTES`
is left out of the pickle and copied once into the sender's shared-memory block, and the pickle holds only
its place there. The receiver maps the block and hands those places back to the unpickler. Any structure
works (dicts of inputs, a `CaptureReply` with its summaries and full tensors, arguments an engine gains
later), so the worker protocol needs no schema of its own. Small arrays stay inline: a shared-memory block
costs a few system calls, more than copying a few kilobytes through the socket; a non-contiguous array
(which nothing here sends) is pickled inline, copied as pickle copies it. The pickling runs in C, once per
object: a `persistent_id` hook, a Python call for every object of the message, cost 6x as much on a small
CNN's summary reply (280 against 48 us).

Python 3.11's `SharedMemory` registers every block it opens with the process's resource tracker, also
blocks it only attaches to, and the tracker unlinks (and warns about) them when that process exits. Here
both sides `_disown` every block at once: a block's name starts with its worker's prefix, and the
supervisor, which reaps every worker, removes the blocks of a stopped one by that prefix; a worker whose
server has gone unlinks both blocks itself.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

INLINE_BYTES = 64 * 1024
"""Arrays up to this size travel inside the pickle."""
SHM_DIR = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory, listed to find blocks a dead process left behind."""
ALIGN = 64
"""Every array in a block starts on a cache line, which NumPy and TensorFlow read fastest."""
GRAIN = 1024 * 1024
"""Blocks are sized in whole MiB, with a quarter to spare, so slowly growing messages rarely replace one."""
KEEP_BYTES = 16 * 1024 * 1024
"""A block up to this size is kept however small the messages in it; a larger one at most 4x its use."""


@dataclass(frozen=True)
class Slot:
    offset: int
    size: int


@dataclass(frozen=True)
class Packed:
    """What crosses the socket: the pickle, and the block holding its large arrays (if any)."""

    pickle: bytes
    block: str | None = None
    slots: tuple[Slot, ...] = ()

    @property
    def shared_bytes(self) -> int:
        return sum(slot.size for slot in self.slots)


class Outbox:
    """The sending side of one direction of one worker's calls: one block, reused call after call.

    Calls on a worker are strictly one at a time and the receiver is done with a message before the next
    one is sent, so one block serves them all. Reusing it matters more than it seems: the pages of a
    fresh block fault in on first touch, on both sides, which on a VM costs far more than the copy (a
    new 1 MB block per call measured 3.8 ms per round trip here, against 0.1 ms for the copy). The block
    is replaced by a larger one when a message needs more, and by a smaller one when it is far larger than
    what is used, so one huge capture does not pin its memory for good.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._block: SharedMemory | None = None

    def pack(self, message: Any) -> Packed:
        """`message` ready to send: pickled, with every large array copied into this outbox's block.

        The arrays are copied, so the caller may change or free them once this returns; the block's
        contents stay valid only until the next `pack` (which may reuse or replace the block), which is
        why calls on one worker go strictly one at a time. A message without large arrays touches no block.
        """
        large: list[memoryview] = []

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            view = buffer.raw()
            if view.nbytes <= INLINE_BYTES:
                return True  # in the pickle
            large.append(view)
            return False

        data = pickle.dumps(message, protocol=5, buffer_callback=out_of_band)
        if not large:
            return Packed(data)
        slots, end = [], 0
        for view in large:
            slots.append(Slot(end, view.nbytes))
            end += -(-view.nbytes // ALIGN) * ALIGN
        block = self._block_for(end)
        assert block.buf is not None, "the block is closed"
        for view, slot in zip(large, slots, strict=True):
            block.buf[slot.offset : slot.offset + slot.size] = view
        return Packed(data, block.name, tuple(slots))

    def _block_for(self, size: int) -> SharedMemory:
        block = self._block
        if block is not None and size <= block.size <= max(4 * size, KEEP_BYTES):
            return block
        self.close()
        rounded = -(-(size + size // 4) // GRAIN) * GRAIN
        # Named by prefix and not tracked: the supervisor removes a dead worker's blocks by their prefix.
        block = SharedMemory(name=f"{self._prefix}-{_unique()}", create=True, size=rounded)
        _disown(block)
        self._block = block
        return block

    def close(self) -> None:
        """Unlink the block (the receiver's mapping stays valid until it maps the next one)."""
        if self._block is not None:
            _unlink(self._block.name)
            _close(self._block)
            self._block = None


class Inbox:
    """The receiving side: maps the sender's current block once and keeps it mapped while it is in use."""

    def __init__(self) -> None:
        self._block: SharedMemory | None = None

    def unpack(self, packed: Packed) -> Any:
        """The message with arrays of their own (the server's results, which outlive the next call)."""
        if packed.block is None:
            return pickle.loads(packed.pickle)
        block = self._map(packed.block)
        copies = [bytearray(_view(block, slot)) for slot in packed.slots]
        return pickle.loads(packed.pickle, buffers=copies)

    @contextmanager
    def opened(self, packed: Packed) -> Iterator[Any]:
        """The message with arrays that view the block, valid inside the `with` (the worker's inputs: the
        engine reads them during the call, so copying them would only cost time)."""
        if packed.block is None:
            yield pickle.loads(packed.pickle)
            return
        block = self._map(packed.block)
        views = [_view(block, slot) for slot in packed.slots]
        try:
            yield pickle.loads(packed.pickle, buffers=views)
        finally:
            views = []  # drop this frame's references, so the block can close when the sender replaces it

    def unlink(self) -> None:
        """Unlink the sender's block: for a worker whose server is gone, so nothing stays in /dev/shm."""
        if self._block is not None:
            _unlink(self._block.name)
            _close(self._block)
            self._block = None

    def _map(self, name: str) -> SharedMemory:
        if self._block is None or self._block.name != name:
            if self._block is not None:  # the sender replaced its block (and unlinked the old one)
                _close(self._block)
            self._block = SharedMemory(name=name)
            _disown(self._block)
        return self._block


def remove_blocks(prefix: str) -> int:
    """Unlink every block whose name starts with `prefix-` (left by a process that died mid-call)."""
    removed = 0
    for path in SHM_DIR.glob(f"{prefix}-*") if SHM_DIR.is_dir() else ():
        with suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


_lingering: list[SharedMemory] = []


def _close(block: SharedMemory) -> None:
    """Close a block; one still viewed (TensorFlow may hold an input a little longer) waits for a later try."""
    for waiting in [*_lingering, block]:
        try:
            waiting.close()
        except BufferError:
            if waiting not in _lingering:
                _lingering.append(waiting)
        else:
            if waiting in _lingering:
                _lingering.remove(waiting)


def _view(block: SharedMemory, slot: Slot) -> memoryview:
    buffer = block.buf
    assert buffer is not None, "the block is closed"
    return buffer[slot.offset : slot.offset + slot.size]


def _unlink(name: str) -> None:
    """Unlink by path: `SharedMemory.unlink` would also tell the tracker, which no longer knows the block."""
    with suppress(FileNotFoundError):
        (SHM_DIR / name).unlink()


def _disown(block: SharedMemory) -> None:
    """Take the block off this process's resource tracker: the supervisor or the worker unlinks it."""
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]


_counter = iter(range(1 << 62))


def _unique() -> str:
    return f"{next(_counter):x}"
