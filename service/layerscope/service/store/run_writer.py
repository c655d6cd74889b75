"""Runs written behind the response: a capture answers as soon as its run is on disk in the spool, and one
writer thread moves runs into the database in order.

Storing a run in SQL (SQLAlchemy, a transaction, the summary rows) took longer than a small model's capture
itself, on the request's path. Now the request pays for a line appended to the spool's journal (it survives
a crash of this process, and is replayed at the next start) and the writer does the SQL, up to 64 runs a
transaction. Nothing accepted is lost: the spool is the queue, bounded by `spool_max_runs` (full:
UNAVAILABLE, never more memory), and the store's writes are idempotent by run id, so a run replayed after a
crash between "written" and "marked taken" is stored once. What callers read stays consistent with what
they were told: a run is found (from the spool while it waits), and a listing waits for the writer to catch
up first.

The writer starts `delay` seconds after the first run it is woken for: the answer that run belongs to is
still being written to its caller then, and the writer's Python (SQLAlchemy) would take the interpreter's
lock from it, which cost a small capture about a fifth of its time. Runs accepted meanwhile are written in
the same turn. A listing or a stop does not wait for the delay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from layerscope.service.domain.runs import RunPage, RunQuery, RunRecord
from layerscope.service.errors import InvalidInput, NotFound, StoreUnavailable
from layerscope.service.store.spool import Spool
from layerscope.service.store.sql_store import retry_key

log = logging.getLogger(__name__)
CATCH_UP_SECONDS = 5.0
"""How long a listing waits for the writer before it answers with what the database holds."""


class RunDatabase(Protocol):
    """What the writer needs of the SQL store (`SqlRunStore`)."""

    def validate(self, run: RunRecord) -> None: ...
    def save_run(self, run: RunRecord) -> bool: ...
    def save_runs(self, runs: Sequence[RunRecord]) -> list[bool]: ...
    def retried(self, run: RunRecord) -> bool: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def list_runs(self, query: RunQuery) -> RunPage: ...


class RunWriter:
    def __init__(
        self,
        store: RunDatabase,
        spool: Spool[RunRecord],
        on_depth: Callable[[int], None] = lambda depth: None,
        retry_seconds: float = 5.0,
        on_written: Callable[[float], None] = lambda seconds: None,
        delay: float = 0.0,
    ) -> None:
        self._store = store
        self._timed = _Timed(store, on_written)
        self._spool = spool
        self._on_depth = on_depth
        self._retry_seconds = retry_seconds
        self._delay = delay
        self._pending: dict[str, dict[str, Any]] = {}
        """Run id -> what the run asked for (its retry key), for runs accepted and not yet in the database."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._now = threading.Event()
        """Set by those who wait for the writer (a listing, a stop): no delay this turn."""
        self._caught_up = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        on_depth(spool.depth)

    # -- the request path ------------------------------------------------------------------------------------

    def validate(self, run: RunRecord) -> None:
        self._store.validate(run)

    def save_run(self, run: RunRecord, fresh: bool = False) -> bool:
        """Accept a run: refused now if the database would refuse it, then queued on disk; True when queued,
        False for a retry of a run accepted before (nothing to write).

        `fresh`: the server chose the id, so no stored run can hold it; otherwise a caller's retry is checked
        against the database (a run it holds under this id must be the same request, as before)."""
        self._store.validate(run)
        key = retry_key(run)
        with self._lock:
            waiting = self._pending.get(run.run_id)
        if waiting is not None:
            return _same_request(run, waiting, key)
        if not fresh:
            try:
                if self._store.retried(run):
                    return False
            except StoreUnavailable:
                pass  # the spool will meet the database later; a different run under this id is rejected then
        if self._spool.depth >= self._spool.max_runs:
            self.replay()  # full: make room now if the database is back, rather than refuse until the writer's turn
        with self._lock:
            self._spool.put(run, sync=False)
            self._pending[run.run_id] = key
        self._on_depth(self._spool.depth)
        self._wake.set()
        return True

    # -- readers ---------------------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        try:
            return self._store.get_run(run_id)
        except (NotFound, StoreUnavailable) as exc:
            waiting = self._spool.find(run_id)
            if waiting is not None:
                return waiting
            if isinstance(exc, StoreUnavailable):
                raise
        return self._store.get_run(run_id)  # written between the two looks

    def list_runs(self, query: RunQuery) -> RunPage:
        """The database's runs, once the writer has caught up with the runs accepted before this call."""
        with self._lock:
            self._now.set()
            self._wake.set()
            self._caught_up.wait_for(lambda: not self._pending or self._stopping, timeout=CATCH_UP_SECONDS)
        return self._store.list_runs(query)

    @property
    def depth(self) -> int:
        return self._spool.depth

    # -- the writer ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer; it begins with the runs a previous process left in the spool."""
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="layerscope-run-writer", daemon=True)
        self._thread.start()

    def replay(self) -> int:
        """Move what waits in the spool into the database, oldest first; returns how many runs were stored."""
        stored = self._spool.replay(self._timed)
        with self._lock:  # save_run queues under this lock: the depth and the pending ids agree here
            depth = self._spool.depth
            if depth == 0:
                self._pending.clear()
            else:  # keep the ids still on disk (a retry of one must still be recognised)
                on_disk = self._spool.waiting(self._pending)
                self._pending = {k: v for k, v in self._pending.items() if k in on_disk}
            self._caught_up.notify_all()
        self._on_depth(depth)
        return stored

    def stop(self) -> int:
        """Stop the writer after one last replay; returns how many runs stay in the spool for the next start."""
        with self._lock:
            self._stopping = True
            self._caught_up.notify_all()
        self._now.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.replay()
        return self._spool.depth

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._retry_seconds)
            if self._delay:
                self._now.wait(self._delay)
            self._now.clear()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.replay()
            except Exception:  # the writer must outlive any one bad run or database error
                log.exception("writing spooled runs failed; will retry")


class _Timed:
    """The store as the spool's replay writes to it, each run's write timed (the database write metric: runs
    written together count as one write each of their share of the time)."""

    def __init__(self, store: RunDatabase, on_written: Callable[[float], None]) -> None:
        self._store = store
        self._on_written = on_written

    def save_run(self, run: RunRecord) -> bool:
        return self.save_runs([run])[0]

    def save_runs(self, runs: Sequence[RunRecord]) -> list[bool]:
        started = time.perf_counter()
        stored = self._store.save_runs(runs)
        share = (time.perf_counter() - started) / max(len(runs), 1)
        for _ in runs:
            self._on_written(share)
        return stored


def _same_request(run: RunRecord, waiting: dict[str, Any], key: dict[str, Any]) -> bool:
    differing = [name for name in key if key[name] != waiting[name]]
    if differing:
        raise InvalidInput(
            f"Run '{run.run_id}' is already accepted for {waiting['model']}; expected a retry of that run, "
            f"received another {', '.join(differing)}: {key['model']}. Choose a new run id."
        )
    return False
