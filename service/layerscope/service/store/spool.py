"""A bounded, durable spool: finished runs (and closed monitoring windows) wait here, in order, until the
database takes them.

Items are appended to a journal, one line each: the digest of the item's key (never the key itself, which
the client chose), a space and the item's JSON. An append is one `write` to a file already open, so a run
is on disk (in the page cache: it survives a crash of this process; `sync` also survives one of the machine)
in about 5 us, where a file per run cost 0.14-0.35 ms to create, write and rename on the request's path.
A crash in the middle of an append leaves a line without its newline, which was never acknowledged: it is
cut off at the next start. Beside the journal a `.done` file holds the offset up to which items have
been stored (or set aside), written after each batch; a crash between "stored" and "marked" replays a few
items, harmlessly, since the store's writes are idempotent by key. Appends move to a new segment every
ROTATE_BYTES, and a segment is removed once every item in it is taken, so the journal holds little more
than what waits, even when the writer never quite catches up.

An item the store refuses for good (its id was meanwhile taken by another run) is written to `rejected/`
with the reason, kept for an operator, and never blocks the items behind it. When the spool is full a new
item is refused with `StoreUnavailable`, never silently dropped. A `Codec` says how one kind of item is
written, named and stored, so runs and windows share the mechanism in folders of their own. A folder
holding one file per run (the earlier layout) is taken into the journal at start.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from layerscope.service.domain.runs import RunRecord
from layerscope.service.errors import ServiceError, StoreUnavailable
from layerscope.service.store.run_json import run_from_json, run_to_json

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one kind of spooled item is written, found again and handed to its store."""

    encode: Callable[[T], str]
    decode: Callable[[str], T]
    key: Callable[[T], str]
    """The item's idempotency key (a run id, a window id)."""
    save: Callable[[Any, T], object]
    """Stores the item in the store given to `Spool.replay`."""
    noun: str
    save_many: Callable[[Any, list[T]], object] | None = None
    """Stores several in one go, all or none (None: one at a time). A refusal of any makes the spool store
    that batch one at a time, to learn which item to set aside."""


RUNS: Codec[RunRecord] = Codec(
    run_to_json,
    run_from_json,
    lambda run: run.run_id,
    lambda store, run: store.save_run(run),
    "runs",
    lambda store, runs: store.save_runs(runs),
)
REPLAY_BATCH = 64
"""Items replayed in one store call (one transaction), when the codec can save several."""


ROTATE_BYTES = 8 * 2**20
"""Appends go to a new segment once the current one is this large (or once it is drained past it); a
segment is removed when every item in it is taken, so the journal never holds much more than what waits."""


@dataclass(frozen=True)
class _Entry:
    """A pending item: where its line lies in which segment, and its key's digest."""

    segment: int
    offset: int
    length: int
    digest: str


class Spool(Generic[T]):
    def __init__(self, folder: Path, max_runs: int, codec: Codec[T] = RUNS) -> None:  # type: ignore[assignment]
        self.folder = folder
        self.max_runs = max_runs
        self.codec = codec
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        """Held to append or consume an item (and to read one by key): never while the database is written."""
        self._replaying = threading.Lock()
        self._entries: collections.deque[_Entry] = collections.deque()
        self._waiting: collections.Counter[str] = collections.Counter()
        self._opening = threading.Lock()
        self._readers: dict[int, int] = {}
        """Segment -> a descriptor it is read through (pending items are read back with `pread`)."""
        self._append, self._segment, self._size = -1, 0, 0
        """The descriptor appends go through, the segment it is open on, and that segment's size."""
        segments = sorted(self._sequence(path) for path in folder.glob("*.journal"))
        for segment in segments:
            self._scan(segment)
        self._start_segment(segments[-1] if segments else 1)
        self._adopt_files()

    def _start_segment(self, segment: int) -> None:
        """Append to `segment` from now on (a new one, or at start the last one left)."""
        if self._append >= 0:
            os.close(self._append)
        self._segment = segment
        self._append = os.open(self._path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._append).st_size

    @staticmethod
    def _sequence(path: Path) -> int:
        return int(path.name.split(".", 1)[0])

    def _path(self, segment: int, suffix: str = "journal") -> Path:
        return self.folder / f"{segment:012d}.{suffix}"

    @property
    def depth(self) -> int:
        return len(self._entries)

    def put(self, item: T, sync: bool = True) -> None:
        """Keep an item until the database takes it: one appended line, whole or (after a crash in the middle
        of it) cut off at the next start. `sync` also flushes it to the disk (fsync), which a crash of the
        machine needs; without it the item survives a crash of this process (it is in the kernel's page
        cache). StoreUnavailable when the spool is full."""
        digest, text = _digest(self.codec.key(item)), self.codec.encode(item)
        with self._lock:
            if len(self._entries) >= self.max_runs:
                raise StoreUnavailable(
                    f"The database is unreachable or behind, and the spool holds its limit of {self.max_runs} "
                    f"{self.codec.noun}; expected the database to take them before more are accepted. Retry later."
                )
            self._append_line(digest, text, sync)

    def _append_line(self, digest: str, text: str, sync: bool) -> None:
        # JSON never needs a raw newline (one inside a string is escaped): the line stays one line.
        line = f"{digest} {text.replace(chr(10), ' ')}\n".encode()
        if self._size > ROTATE_BYTES:  # the old segment goes once its items are all taken
            self._start_segment(self._segment + 1)
        offset = self._size
        try:
            written = os.write(self._append, line)
            if written != len(line):
                raise OSError(f"wrote {written} of {len(line)} bytes (is the disk full?)")
            if sync:
                os.fsync(self._append)
        except OSError:
            os.ftruncate(self._append, offset)  # no half line for the next append to follow
            raise
        self._size += len(line)
        self._entries.append(_Entry(self._segment, offset, len(line), digest))
        self._waiting[digest] += 1

    def waiting(self, keys: Iterable[str]) -> set[str]:
        """Those of `keys` (run ids, window ids) whose item is still in the spool."""
        with self._lock:
            return {key for key in keys if self._waiting[_digest(key)]}

    def find(self, key: str) -> T | None:
        """An item waiting in the spool, by its key (run id, window id); None when none is."""
        digest = _digest(key)
        with self._lock:  # replay consumes items; under the lock a listed one is still there
            if not self._waiting[digest]:  # the common case, known without a look at the entries
                return None
            for entry in self._entries:
                if entry.digest != digest:
                    continue
                item = self.codec.decode(self._read(entry).decode())
                if self.codec.key(item) == key:
                    return item
        return None

    def replay(self, store: Any) -> int:
        """Write spooled items oldest first; stop while the database is unreachable. Returns how many were stored.

        One replay at a time; `put` is not held up meanwhile (new items queue behind those being written)."""
        stored = 0
        with self._replaying:
            with self._lock:
                due = len(self._entries)
            while due > 0:
                with self._lock:
                    batch = list(itertools.islice(self._entries, min(REPLAY_BATCH, due)))
                written, reachable = self._replay_batch(store, batch)
                stored += written
                due -= len(batch)
                if not reachable:
                    break
            with self._lock:
                self._remove_taken_segments()
        return stored

    def _replay_batch(self, store: Any, entries: list[_Entry]) -> tuple[int, bool]:
        """Store these items, together when the codec can; how many were stored and whether the store was
        reachable throughout. An item that cannot be read or is refused is set aside, the rest are stored."""
        items: list[tuple[_Entry, str, T | None]] = []
        for entry in entries:
            raw = self._read(entry)
            try:
                text = raw.decode()
                items.append((entry, text, self.codec.decode(text)))
            except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
                items.append((entry, raw.decode(errors="replace"), None))
                log.error("a spooled line is no readable %s item: %s", self.codec.noun, exc)
        readable = [item for _, _, item in items if item is not None]
        if self.codec.save_many is not None and len(readable) > 1 and len(readable) == len(items):
            try:
                self.codec.save_many(store, readable)
            except StoreUnavailable:
                return 0, False
            except _REFUSALS:
                pass  # one of them is refused: one at a time, to set only that one aside
            else:
                self._consume(entries)
                return len(entries), True
        stored = 0
        for entry, text, item in items:
            if item is None:
                self._set_aside(entry, text, "the spooled text is not a readable item")
                continue
            try:
                self.codec.save(store, item)
            except StoreUnavailable:
                return stored, False
            except _REFUSALS as exc:
                self._set_aside(entry, text, getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
                continue
            self._consume([entry])
            stored += 1
        return stored, True

    def _read(self, entry: _Entry) -> bytes:
        """The item's JSON as it was appended (without its digest and newline)."""
        with self._opening:  # `find` reads under the spool's lock, the writer without it
            reader = self._readers.get(entry.segment)
            if reader is None:
                reader = self._readers[entry.segment] = os.open(self._path(entry.segment), os.O_RDONLY)
        line = os.pread(reader, entry.length, entry.offset)
        return line[len(entry.digest) + 1 : -1]

    def _consume(self, entries: list[_Entry]) -> None:
        """Mark these items, the oldest pending ones, as taken: dropped from memory, their end recorded."""
        with self._lock:
            for entry in entries:
                first = self._entries.popleft()
                assert first == entry, "items are consumed in the order they were spooled"
                self._waiting[entry.digest] -= 1
                if not self._waiting[entry.digest]:
                    del self._waiting[entry.digest]
            ends = {entry.segment: entry.offset + entry.length for entry in entries}  # the last of each segment
            for segment, end in ends.items():
                _write_offset(self._path(segment, "done"), end)

    def _remove_taken_segments(self) -> None:
        """Remove the segments before the oldest pending item's (all their items are taken), and the one
        appended to as well once it is drained and has grown past ROTATE_BYTES (the next append starts anew)."""
        oldest = self._entries[0].segment if self._entries else self._segment
        if not self._entries and self._size > ROTATE_BYTES:
            self._start_segment(self._segment + 1)
            oldest = self._segment
        for segment in [s for s in self._readers if s < oldest]:
            os.close(self._readers.pop(segment))
        for path in self.folder.glob("*.journal"):
            if self._sequence(path) < oldest:
                _remove_segment(path)

    def _scan(self, segment: int) -> None:
        """The pending items of a segment left by an earlier process; a line cut short by a crash is cut off."""
        path = self._path(segment)
        data = path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            os.truncate(path, whole)
            log.warning(
                "cut off %d bytes of an item half-written to %s when its process stopped", len(data) - whole, path
            )
        offset = _read_offset(self._path(segment, "done"), data[:whole])
        while offset < whole:
            end = data.index(b"\n", offset) + 1
            space = data.find(b" ", offset, end)  # a line without one is set aside when it is replayed
            digest = data[offset:space].decode(errors="replace") if space >= 0 else ""
            self._entries.append(_Entry(segment, offset, end - offset, digest))
            self._waiting[digest] += 1
            offset = end

    def _adopt_files(self) -> None:
        """Items spooled one file each (the layout before the journal) are appended to it, then removed: a
        crash in between replays them twice, which the idempotent store takes as a retry."""
        for stale in self.folder.glob(".tmp-*"):  # a write interrupted by a crash never became a spooled item
            stale.unlink()
        files = sorted(self.folder.glob("[0-9]*-*.json"), key=lambda path: int(path.name.split("-", 1)[0]))
        for path in files:  # named sequence-digest.json: taken as they are, whatever the limit, never lost
            self._append_line(path.stem.split("-", 1)[1], path.read_text(), sync=False)
        if files:
            os.fsync(self._append)
        for path in files:
            path.unlink()

    def close(self) -> None:
        """Close the journal's descriptors (a spool is otherwise used for the life of its process)."""
        with self._lock:
            for reader in self._readers.values():
                os.close(reader)
            self._readers.clear()
            os.close(self._append)

    def rejected(self) -> list[Path]:
        return sorted((self.folder / "rejected").glob("*.json"))

    def _set_aside(self, entry: _Entry, text: str, reason: str) -> None:
        """Keep an item the store will never take where an operator finds it, with the reason beside it."""
        folder = self.folder / "rejected"
        folder.mkdir(exist_ok=True)
        name = f"{time.time_ns():020d}-{entry.digest or 'unreadable'}"  # unique, in the order set aside
        (folder / f"{name}.reason.txt").write_text(reason + "\n")
        (folder / f"{name}.json").write_text(text)
        log.error("spooled %s refused by the store and kept as %s: %s", self.codec.noun, folder / name, reason)
        self._consume([entry])


_REFUSALS = (ServiceError, ValueError, KeyError, TypeError)
"""What a store raises for an item it will never take (any other error is the writer's to retry)."""


def _read_offset(path: Path, data: bytes) -> int:
    """Where the pending items of a segment start: the recorded offset, if it ends a line of `data`
    (anything else, say a torn write, means from the start: a replay the store takes as retries)."""
    try:
        offset = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return offset if 0 <= offset <= len(data) and (offset == 0 or data[offset - 1 : offset] == b"\n") else 0


def _write_offset(path: Path, offset: int) -> None:
    """One small write in place: the offset is fixed width, so a rewrite never leaves old digits behind."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(descriptor, f"{offset:020d}\n".encode(), 0)
    finally:
        os.close(descriptor)


def _remove_segment(path: Path) -> None:
    for each in (path, path.with_suffix(".done")):
        with contextlib.suppress(FileNotFoundError):
            each.unlink()


def _digest(run_id: str) -> str:
    return hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]
