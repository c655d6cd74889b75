"""A bounded, durable spool: finished runs wait here, in order, while the database is unreachable.

Runs are written as one JSON file each (atomically: temp file, fsync, rename) named by a sequence number,
replayed oldest first when the database answers again, and removed only after the store accepted them.
The store's writes are idempotent by run id, so a crash between "stored" and "removed" replays harmlessly.
When the spool is full a new run is refused with `StoreUnavailable`, never silently dropped.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from layerscope.service.domain import (
    Finding,
    LayerSummaryRecord,
    RunPage,
    RunQuery,
    RunRecord,
    RunStore,
    Severity,
    Summary,
)
from layerscope.service.errors import NotFound, StoreUnavailable


def run_to_json(run: RunRecord) -> str:
    data = asdict(run)
    data["created_at"] = run.created_at.isoformat()
    for finding in data["findings"]:
        finding["severity"] = str(finding["severity"])
    return json.dumps(data, allow_nan=True)


def run_from_json(text: str) -> RunRecord:
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
    return RunRecord(**data, summaries=summaries, findings=findings)


class Spool:
    def __init__(self, folder: Path, max_runs: int) -> None:
        self.folder = folder
        self.max_runs = max_runs
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

    def put(self, run: RunRecord) -> None:
        with self._lock:
            if self.depth >= self.max_runs:
                raise StoreUnavailable(
                    f"The database is unreachable and the spool holds its limit of {self.max_runs} runs; "
                    "expected the database back before more runs are accepted. Retry later."
                )
            target = self.folder / f"{self._next:012d}-{run.run_id}.json"
            self._next += 1
            tmp = self.folder / f".tmp-{target.name}"
            with tmp.open("w") as f:
                f.write(run_to_json(run))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)

    def find(self, run_id: str) -> RunRecord | None:
        for path in self.pending():
            if path.name.split("-", 1)[1] == f"{run_id}.json":
                return run_from_json(path.read_text())
        return None

    def replay(self, store: RunStore) -> int:
        """Write spooled runs oldest first; stop at the first failure. Returns how many were stored."""
        stored = 0
        with self._lock:
            for path in self.pending():
                try:
                    store.save_run(run_from_json(path.read_text()))
                except StoreUnavailable:
                    break
                path.unlink()
                stored += 1
        return stored


class SpoolingStore:
    """The run store as the application sees it: writes that survive a database outage."""

    def __init__(self, store: RunStore, spool: Spool, on_depth: Callable[[int], None] = lambda depth: None) -> None:
        self._store = store
        self._spool = spool
        self._on_depth = on_depth
        on_depth(spool.depth)

    def save_run(self, run: RunRecord) -> bool:
        # While older runs wait, a new one queues behind them, so runs reach the database in order.
        if self._spool.depth:
            self.replay()
            if self._spool.depth:
                self._spool.put(run)
                self._on_depth(self._spool.depth)
                return True
        try:
            return self._store.save_run(run)
        except StoreUnavailable:
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
        try:
            return self._store.get_run(run_id)
        except (NotFound, StoreUnavailable):
            waiting = self._spool.find(run_id)
            if waiting is None:
                raise
            return waiting

    def list_runs(self, query: RunQuery) -> RunPage:
        return self._store.list_runs(query)
