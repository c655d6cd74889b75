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
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from layerscope.service.domain.findings import Finding, Severity
from layerscope.service.domain.runs import LayerSummaryRecord, RunPage, RunQuery, RunRecord, RunStore
from layerscope.service.domain.summary import Summary
from layerscope.service.domain.training import probe_from_data, probe_to_data
from layerscope.service.errors import NotFound, ServiceError, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_to_json(run: RunRecord) -> str:
    data = asdict(run)
    data["created_at"] = run.created_at.isoformat()
    for finding in data["findings"]:
        finding["severity"] = str(finding["severity"])
    data["probe"] = probe_to_data(run.probe) if run.probe else None
    return json.dumps(data, allow_nan=True)


def run_from_json(text: str) -> RunRecord:
    """The inverse of `run_to_json`: the same run, with tuples, enums, times and the probe restored."""
    data: dict[str, Any] = json.loads(text)
    summaries = tuple(
        LayerSummaryRecord(
            s["layer"],
            s["kind"],
            Summary(
                **{
                    **s["summary"],
                    "histogram": tuple(s["summary"]["histogram"]),
                    "histogram_range": tuple(s["summary"]["histogram_range"]),
                    "unit_activity": tuple(s["summary"]["unit_activity"]),
                }
            ),
        )
        for s in data.pop("summaries")
    )
    findings = tuple(
        Finding(**{**f, "severity": Severity(f["severity"]), "layers": tuple(f["layers"])})
        for f in data.pop("findings")
    )
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    probe = data.pop("probe", None)
    return RunRecord(**data, summaries=summaries, findings=findings, probe=probe_from_data(probe) if probe else None)


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


RUNS: Codec[RunRecord] = Codec(
    run_to_json, run_from_json, lambda run: run.run_id, lambda store, run: store.save_run(run), "runs"
)


class Spool(Generic[T]):
    def __init__(self, folder: Path, max_runs: int, codec: Codec[T] = RUNS) -> None:  # type: ignore[assignment]
        self.folder = folder
        self.max_runs = max_runs
        self.codec = codec
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # a write interrupted by a crash never became a spooled run
            stale.unlink()
        self._lock = threading.Lock()
        self._next = max((self._sequence(p) for p in self.pending()), default=0) + 1

    @staticmethod
    def _sequence(path: Path) -> int:
        return int(path.name.split("-", 1)[0])

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("[0-9]*-*.json"), key=self._sequence)

    @property
    def depth(self) -> int:
        return len(self.pending())

    def put(self, item: T) -> None:
        """Keep an item until the database is back: written in full and fsynced before it appears under its
        final name, so a crash leaves it whole or absent. StoreUnavailable when the spool is full."""
        with self._lock:
            if self.depth >= self.max_runs:
                raise StoreUnavailable(
                    f"The database is unreachable and the spool holds its limit of {self.max_runs} "
                    f"{self.codec.noun}; expected the database back before more are accepted. Retry later."
                )
            target = self.folder / f"{self._next:012d}-{_digest(self.codec.key(item))}.json"
            self._next += 1
            tmp = self.folder / f".tmp-{target.name}"
            with tmp.open("w") as f:
                f.write(self.codec.encode(item))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)

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
        """Write spooled items oldest first; stop while the database is unreachable. Returns how many were stored."""
        stored = 0
        with self._lock:
            for path in self.pending():
                try:
                    self.codec.save(store, self.codec.decode(path.read_text()))
                except StoreUnavailable:
                    break
                except (ServiceError, ValueError, KeyError, TypeError) as exc:
                    self._reject(path, exc)
                    continue
                path.unlink()
                stored += 1
        return stored

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


def _digest(run_id: str) -> str:
    return hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class SpoolingStore:
    """The run store as the application sees it: writes that survive a database outage."""

    def __init__(
        self, store: RunStore, spool: Spool[RunRecord], on_depth: Callable[[int], None] = lambda depth: None
    ) -> None:
        self._store = store
        self._spool = spool
        self._on_depth = on_depth
        on_depth(spool.depth)

    def validate(self, run: RunRecord) -> None:
        self._store.validate(run)

    def save_run(self, run: RunRecord) -> bool:
        """Store a run, or spool it while the database is unreachable (True either way, False when the same
        run was stored before). Runs reach the database in the order they were saved."""
        # While older runs wait, a new one queues behind them, so runs reach the database in order.
        if self._spool.depth:
            self.replay()
            if self._spool.depth:
                return self._wait(run)
        try:
            return self._store.save_run(run)  # validates the run itself
        except StoreUnavailable:
            return self._wait(run)

    def _wait(self, run: RunRecord) -> bool:
        # Refuse now what the database would refuse later: a spooled run must be one it can take.
        self._store.validate(run)
        self._spool.put(run)
        self._on_depth(self._spool.depth)
        return True

    def replay(self) -> int:
        stored = self._spool.replay(self._store) if self._spool.depth else 0
        self._on_depth(self._spool.depth)
        return stored

    @property
    def depth(self) -> int:
        return self._spool.depth

    def get_run(self, run_id: str) -> RunRecord:
        """A stored run, or one still waiting in the spool; NotFound when neither has it (StoreUnavailable
        when the database is down and the spool does not have it)."""
        try:
            return self._store.get_run(run_id)
        except (NotFound, StoreUnavailable) as exc:
            waiting = self._spool.find(run_id)
            if waiting is not None:
                return waiting
            if isinstance(exc, StoreUnavailable):
                raise
        # Not found, nor in the spool: a replay may have moved it to the database in between.
        return self._store.get_run(run_id)

    def list_runs(self, query: RunQuery) -> RunPage:
        return self._store.list_runs(query)
