"""One end of a worker's socket: whole messages, framed, their large arrays through shared memory.

A frame is a fixed header (the pickle's size, the block name's size, the number of slots), the block's name,
each slot's offset and size, then the pickle; `transport` makes the pickle and fills the block. Each message
is pickled once, as itself: an earlier wire pickled the arguments, wrapped them in a message and pickled that
again through `multiprocessing.connection`, whose receive also took two system calls per message. The CPU of
a round trip went from 53 to 48 us at batch 1 and from 65-69 to 56 us at batch 32 (bench/README.md); most of
a crossing's 120-300 us on a small VM is the two wake-ups, which no framing changes.

Calls go strictly one at a time, so at most one frame is in flight each way; bytes read past a frame are
kept for the next one all the same, so a reader never depends on that.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from layerscope.service.workers.transport import Inbox, Outbox, Packed, Slot

HEADER = struct.Struct("<QHI")
"""Pickle bytes, block name bytes, slots."""
SLOT = struct.Struct("<QQ")
"""A slot's offset and size in the block."""
BUFFER_BYTES = 64 * 1024
"""The receive buffer's size to start with: a call's pickle without its large arrays fits in it."""


class Wire:
    """Sends and receives whole messages over `sock`, large arrays through `outbox`'s and the peer's blocks.

    Not thread-safe: its owner sends one message and reads its answer before the next.
    """

    def __init__(self, sock: socket.socket, outbox: Outbox, inbox: Inbox) -> None:
        self._socket = sock
        self._outbox = outbox
        self._inbox = inbox
        self._buffer = bytearray(BUFFER_BYTES)
        self._start = self._end = 0  # the bytes received and not yet taken: self._buffer[start:end]

    def send(self, message: Any) -> None:
        """Pickle `message` and write it in one go; raises OSError when the peer is gone."""
        self.write(self.frame(message))

    def frame(self, message: Any) -> bytes:
        """`message` as one frame, its large arrays copied into this side's block. Whatever this raises (an
        object that does not pickle, a block that cannot be made) happens before anything is written."""
        packed = self._outbox.pack(message)
        name = (packed.block or "").encode()
        parts = [HEADER.pack(len(packed.pickle), len(name), len(packed.slots)), name]
        parts += [SLOT.pack(slot.offset, slot.size) for slot in packed.slots]
        parts.append(packed.pickle)
        return b"".join(parts)

    def write(self, frame: bytes) -> None:
        """Write a frame made by `frame`; raises OSError when the peer is gone."""
        self._socket.sendall(frame)

    def receive(self) -> Any:
        """The next message, its arrays copies of their own (they outlive the next message).

        Blocks until a whole frame is in; EOFError when the peer closed its end, even in mid-frame."""
        return self._inbox.unpack(self._next_frame())

    @contextmanager
    def opened(self) -> Iterator[Any]:
        """The next message with its large arrays viewing the peer's block, valid inside the `with`."""
        with self._inbox.opened(self._next_frame()) as message:
            yield message

    def discard(self) -> None:
        """Unlink both blocks (a worker whose server is gone) and close the socket."""
        self._inbox.unlink()
        self._outbox.close()
        self._socket.close()

    def __del__(self) -> None:
        # The server's end closes with its last reference, as a multiprocessing Connection did: the worker's
        # watcher thread reaps the process while its owner may still be reading, so neither closes it early.
        self._socket.close()

    def _next_frame(self) -> Packed:
        """Read the next frame whole."""
        view = self._take(HEADER.size)
        size, name_bytes, slots = HEADER.unpack(view)
        name = bytes(self._take(name_bytes)).decode() if name_bytes else None
        table = self._take(SLOT.size * slots)
        places = tuple(Slot(*SLOT.unpack_from(table, SLOT.size * i)) for i in range(slots))
        packed = Packed(bytes(self._take(size)), name, places)
        if self._start == self._end and len(self._buffer) > BUFFER_BYTES:
            self._buffer, self._start, self._end = bytearray(BUFFER_BYTES), 0, 0  # one huge message: let it go
        return packed

    def _take(self, count: int) -> memoryview:
        """The next `count` bytes of the stream, valid until the next `_take` (which may move the buffer)."""
        if self._end - self._start < count:
            self._fill(count)
        view = memoryview(self._buffer)[self._start : self._start + count]
        self._start += count
        return view

    def _fill(self, count: int) -> None:
        """Read until `count` bytes wait in the buffer, making room at its end (or a larger buffer) first."""
        waiting = self._end - self._start
        if self._start + count > len(self._buffer):
            keep = self._buffer[self._start : self._end]
            if count > len(self._buffer):
                self._buffer = bytearray(count)
            self._buffer[:waiting] = keep
            self._start, self._end = 0, waiting
        view = memoryview(self._buffer)
        while self._end - self._start < count:
            read = self._socket.recv_into(view[self._end :])
            if read == 0:
                raise EOFError("the peer closed its end of the socket")
            self._end += read
