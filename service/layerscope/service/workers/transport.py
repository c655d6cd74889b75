"""Moving call arguments and results between processes without pickling large arrays.

A message is pickled with a `persistent_id` hook: every NumPy array above `INLINE_BYTES` is left out of the
pickle and copied once into one shared-memory block, and the pickle holds only its place there. The
receiver maps the block and rebuilds the arrays at those places. Any structure works (dicts of inputs, a
`CaptureResult` with its summaries and full tensors, arguments an engine gains later), so the worker
protocol needs no schema of its own. Small arrays stay inline: a shared-memory block costs a few system
calls, more than copying a few kilobytes through the socket.

Python 3.11's `SharedMemory` registers every block it opens with the process's resource tracker, also
blocks it only attaches to; whoever does not own a block says so with `_disown`, so the tracker never
removes a block another process still reads, nor warns about it at exit.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

INLINE_BYTES = 64 * 1024
"""Arrays up to this size travel inside the pickle."""
SHM_DIR = Path("/dev/shm")
"""Where Linux keeps POSIX shared memory, listed to find blocks a dead process left behind."""
ALIGN = 64
"""Every array in a block starts on a cache line, which NumPy and TensorFlow read fastest."""


@dataclass(frozen=True)
class Slot:
    offset: int
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Packed:
    """What crosses the socket: the pickle, and the block holding its large arrays (if any)."""

    pickle: bytes
    block: str | None = None
    slots: tuple[Slot, ...] = ()

    @property
    def shared_bytes(self) -> int:
        return sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in self.slots)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list[np.ndarray] = []

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is np.ndarray and obj.nbytes > INLINE_BYTES and not obj.dtype.hasobject:
            self.arrays.append(obj)
            return len(self.arrays) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, load: Callable[[int], np.ndarray]) -> None:
        super().__init__(file)
        self._load = load

    def persistent_load(self, pid: Any) -> np.ndarray:
        return self._load(int(pid))


def pack(message: Any, prefix: str) -> Packed:
    """Pickle `message`; its large arrays go into a new block named `<prefix>-...` that the receiver unlinks.

    The sender keeps no claim on the block: if the receiver dies first, the block's name starts with
    `prefix`, by which the supervisor finds and removes what a dead worker left behind.
    """
    buffer = io.BytesIO()
    pickler = _Pickler(buffer)
    pickler.dump(message)
    if not pickler.arrays:
        return Packed(buffer.getvalue())
    slots, end = [], 0
    for array in pickler.arrays:
        slots.append(Slot(end, array.dtype.str, tuple(array.shape)))
        end += -(-array.nbytes // ALIGN) * ALIGN
    block = SharedMemory(name=f"{prefix}-{_unique()}", create=True, size=max(end, 1))
    try:
        for array, slot in zip(pickler.arrays, slots, strict=True):
            np.copyto(_view(block, slot), array, casting="no")
    except BaseException:
        block.close()
        block.unlink()
        raise
    _disown(block)
    block.close()
    return Packed(buffer.getvalue(), block.name, tuple(slots))


def unpack(packed: Packed) -> Any:
    """Rebuild a message with arrays of its own (the server's results, which outlive any block); unlinks it."""
    if packed.block is None:
        return pickle.loads(packed.pickle)
    block = SharedMemory(name=packed.block)
    try:
        block.unlink()  # the name goes now; the mapping until close
        arrays = [_view(block, slot).copy() for slot in packed.slots]
    finally:
        block.close()
    return _Unpickler(io.BytesIO(packed.pickle), arrays.__getitem__).load()


@contextmanager
def opened(packed: Packed) -> Iterator[Any]:
    """The message with arrays that view the block, for the span of the block (the worker's inputs: the
    engine reads them during the call, so copying them would only cost time). Unlinks the block."""
    if packed.block is None:
        yield pickle.loads(packed.pickle)
        return
    block = SharedMemory(name=packed.block)
    try:
        block.unlink()
        views = [_view(block, slot) for slot in packed.slots]
        yield _Unpickler(io.BytesIO(packed.pickle), views.__getitem__).load()
    finally:
        views = []  # drop this frame's references, so the block can close unless the caller still holds one
        _close(block)


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


def _view(block: SharedMemory, slot: Slot) -> np.ndarray:
    dtype = np.dtype(slot.dtype)
    count = int(np.prod(slot.shape))
    buffer = block.buf
    assert buffer is not None, "the block is closed"
    return np.frombuffer(buffer, dtype, count, slot.offset).reshape(slot.shape)


def _disown(block: SharedMemory) -> None:
    """Take the block off this process's resource tracker: another process unlinks it."""
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]


_counter = iter(range(1 << 62))


def _unique() -> str:
    return f"{next(_counter):x}"
