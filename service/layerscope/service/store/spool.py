"""A bounded, durable spool: finished runs (and closed monitoring windows) wait here, in order, while the
database is unreachable.

Runs are written as one JSON file each (atomically: temp file, fsync, rename) named by a sequence number
and a digest of the run id (never the id itself, which the client chose), replayed oldest first when the
database answers again, and removed only after the store accepted them. The store's writes are
idempotent by run id, so a crash between "stored" and "removed" replays harmlessly. A run the store
refuses for good (its id was meanwhile taken by another run) is moved to `rejected/` with the reason,
kept for an operator, and never blocks the runs behind it. When the spool is full a new run is refused
with `StoreUnavailable`, never silently dropped. A `Codec` says how one kind of item is written, named and
stored, so runs and windows share the mechanism in folders of their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
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


class Spool(Generic[T]):
    def __init__(self, folder: Path, max_runs: int, codec: Codec[T] = RUNS) -> None:  # type: ignore[assignment]
        self.folder = folder
        self.max_runs = max_runs
        self.codec = codec
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # a write interrupted by a crash never became a spooled run
            stale.unlink()
        self._lock = threading.Lock()
        """Held to add or remove a file (and to read one by name): never while the database is written."""
        self._replaying = threading.Lock()
        waiting = self.pending()
        self._next = max((self._sequence(p) for p in waiting), default=0) + 1
        self._count = len(waiting)
        """Items pending, kept as they come and go: `depth` is asked on every write, a listing costs O(n)."""

    @staticmethod
    def _sequence(path: Path) -> int:
        return int(path.name.split("-", 1)[0])

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("[0-9]*-*.json"), key=self._sequence)

    @property
    def depth(self) -> int:
        return self._count

    def put(self, item: T, sync: bool = True) -> None:
        """Keep an item until the database takes it: written in full before it appears under its final name,
        so a crash leaves it whole or absent. `sync` also flushes it to the disk (fsync) first, which a crash
        of the machine needs; without it the item survives a crash of this process (it is in the kernel's
        page cache), at a fraction of the cost. StoreUnavailable when the spool is full."""
        with self._lock:
            if self._count >= self.max_runs:
                raise StoreUnavailable(
                    f"The database is unreachable or behind, and the spool holds its limit of {self.max_runs} "
                    f"{self.codec.noun}; expected the database to take them before more are accepted. Retry later."
                )
            target = self.folder / f"{self._next:012d}-{_digest(self.codec.key(item))}.json"
            self._next += 1
            tmp = self.folder / f".tmp-{target.name}"
            with tmp.open("w") as f:
                f.write(self.codec.encode(item))
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
            self._count += 1

    def waiting(self, keys: Iterable[str]) -> set[str]:
        """Those of `keys` (run ids, window ids) whose item is still in the spool, by file name alone."""
        with self._lock:
            names = {path.name.split("-", 1)[1] for path in self.pending()}
        return {key for key in keys if f"{_digest(key)}.json" in names}

    def find(self, key: str) -> T | None:
        """An item waiting in the spool, by its key (run id, window id); None when none is."""
        name = f"{_digest(key)}.json"
        with self._lock:  # replay removes files; under the lock a listed file is still there
            for path in self.pending():
                if path.name.split("-", 1)[1] == name:
                    item = self.codec.decode(path.read_text())
                    if self.codec.key(item) == key:
                        return item
        return None

    def replay(self, store: Any) -> int:
        """Write spooled items oldest first; stop while the database is unreachable. Returns how many were stored.

        One replay at a time; `put` is not held up meanwhile (new items queue behind those being written)."""
        stored = 0
        with self._replaying:
            pending = self.pending()
            for start in range(0, len(pending), REPLAY_BATCH):
                written, reachable = self._replay_batch(store, pending[start : start + REPLAY_BATCH])
                stored += written
                if not reachable:
                    break
        return stored

    def _replay_batch(self, store: Any, paths: list[Path]) -> tuple[int, bool]:
        """Store these items, together when the codec can; how many were stored and whether the store was
        reachable throughout. An item that cannot be read or is refused is set aside, the rest are stored."""
        items: list[tuple[Path, T]] = []
        for path in paths:
            try:
                items.append((path, self.codec.decode(path.read_text())))
            except (ValueError, KeyError, TypeError) as exc:
                self._set_aside(path, exc)
        if self.codec.save_many is not None and len(items) > 1:
            try:
                self.codec.save_many(store, [item for _, item in items])
            except StoreUnavailable:
                return 0, False
            except _REFUSALS:
                pass  # one of them is refused: one at a time, to set only that one aside
            else:
                self._remove([path for path, _ in items])
                return len(items), True
        stored = 0
        for path, item in items:
            try:
                self.codec.save(store, item)
            except StoreUnavailable:
                return stored, False
            except _REFUSALS as exc:
                self._set_aside(path, exc)
                continue
            self._remove([path])
            stored += 1
        return stored, True

    def _remove(self, paths: list[Path]) -> None:
        with self._lock:
            for path in paths:
                path.unlink()
            self._count -= len(paths)

    def _set_aside(self, path: Path, exc: BaseException) -> None:
        with self._lock:
            self._reject(path, exc)
            self._count -= 1

    def rejected(self) -> list[Path]:
        return sorted((self.folder / "rejected").glob("*.json"))

    def _reject(self, path: Path, exc: BaseException) -> None:
        """Keep a run the store will never take where an operator finds it, with the reason beside it."""
        folder = self.folder / "rejected"
        folder.mkdir(exist_ok=True)
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        (folder / f"{path.stem}.reason.txt").write_text(reason + "\n")
        os.replace(path, folder / path.name)
        log.error("spooled run %s refused by the store and kept in %s: %s", path.name, folder, reason)


_REFUSALS = (ServiceError, ValueError, KeyError, TypeError)
"""What a store raises for an item it will never take (any other error is the writer's to retry)."""


def _digest(run_id: str) -> str:
    return hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]
