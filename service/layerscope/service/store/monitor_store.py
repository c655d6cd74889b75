"""Monitoring windows and references in SQL, and their spool.

Windows are written once by id (a retry or a replayed spool line stores nothing new), read newest first,
rolled up into hours past a day (merged exactly: the sums add) and pruned with the runs. A version's
reference is one row, set by the first replica to offer one; a caller's choice replaces it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from layerscope.service.errors import NotFound, StoreUnavailable
from layerscope.service.monitoring.drift import Reference
from layerscope.service.monitoring.window import Window, merge_windows
from layerscope.service.store.schema import MonitorReferenceRow, MonitorWindowRow
from layerscope.service.store.sessions import transaction
from layerscope.service.store.spool import Codec, Spool
from layerscope.service.store.sql_store import insert_statement


class SqlMonitorStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def _session(self) -> contextlib.AbstractContextManager[Session]:
        return transaction(self._sessions)

    def save_window(self, window: Window) -> bool:
        """Store a closed window; False when its id is stored already (a retry)."""
        with self._session() as session:
            statement = insert_statement(session, MonitorWindowRow).values(**_window_row(window))
            inserted = statement.on_conflict_do_nothing(index_elements=["window_id"]).returning(
                MonitorWindowRow.window_id
            )
            return session.execute(inserted).scalar_one_or_none() is not None

    def list_windows(self, model: str, version: int | None, limit: int) -> list[Window]:
        query = sa.select(MonitorWindowRow).where(MonitorWindowRow.model_name == model)
        if version is not None:
            query = query.where(MonitorWindowRow.model_version == version)
        query = query.order_by(MonitorWindowRow.ended_at.desc(), MonitorWindowRow.window_id).limit(limit)
        with self._session() as session:
            return [_window(row) for row in session.scalars(query)]

    def get_window(self, window_id: str) -> Window:
        with self._session() as session:
            row = session.get(MonitorWindowRow, window_id)
            if row is None:
                raise NotFound(f"Expected a stored monitoring window; no window has id {window_id!r}.")
            return _window(row)

    def get_reference(self, model: str, version: int) -> Reference | None:
        with self._session() as session:
            row = session.get(MonitorReferenceRow, (model, version))
            return None if row is None else _reference(row)

    def offer_reference(self, reference: Reference) -> Reference:
        with self._session() as session:
            statement = insert_statement(session, MonitorReferenceRow).values(**_reference_row(reference))
            session.execute(statement.on_conflict_do_nothing(index_elements=["model_name", "model_version"]))
            row = session.get(MonitorReferenceRow, (reference.model, reference.version))
            assert row is not None  # just inserted, or there before
            return _reference(row)

    def replace_reference(self, reference: Reference) -> Reference:
        with self._session() as session:
            session.execute(
                sa.delete(MonitorReferenceRow).where(
                    MonitorReferenceRow.model_name == reference.model,
                    MonitorReferenceRow.model_version == reference.version,
                )
            )
            session.execute(sa.insert(MonitorReferenceRow).values(**_reference_row(reference)))
        return reference

    def roll_up(self, older_than: datetime) -> int:
        """Merge windows that ended before `older_than` into one window per hour (per model version, replica
        and reference), in one transaction; returns how many windows were merged away."""
        with self._session() as session:
            rows = session.scalars(
                sa.select(MonitorWindowRow)
                .where(MonitorWindowRow.ended_at < older_than, MonitorWindowRow.resolution == "window")
                .order_by(MonitorWindowRow.started_at)
            ).all()
            groups: dict[tuple[str, int, str, str | None, str], list[MonitorWindowRow]] = defaultdict(list)
            for row in rows:
                hour = _as_utc(row.started_at).strftime("%Y-%m-%dT%H")
                groups[(row.model_name, row.model_version, row.replica, row.reference_id, hour)].append(row)
            for key, members in groups.items():
                hour_id = "h-" + hashlib.sha256(repr(key).encode()).hexdigest()[:40]
                windows = [_window(r) for r in members]
                existing = session.get(MonitorWindowRow, hour_id)
                if existing is not None:  # an earlier roll-up of the same hour: add to it
                    windows.insert(0, _window(existing))
                    session.delete(existing)
                    session.flush()
                session.add(MonitorWindowRow(**_window_row(merge_windows(windows, hour_id, "hour"))))
                session.execute(
                    sa.delete(MonitorWindowRow).where(MonitorWindowRow.window_id.in_([r.window_id for r in members]))
                )
            return len(rows)

    def prune(self, older_than: datetime) -> int:
        with self._session() as session:
            deleted = session.connection().execute(
                sa.delete(MonitorWindowRow).where(MonitorWindowRow.ended_at < older_than)
            )
            return int(deleted.rowcount or 0)


def _window_row(window: Window) -> dict[str, Any]:
    drifting = window.drifting
    return {
        "window_id": window.window_id,
        "model_name": window.model,
        "model_version": window.version,
        "replica": window.replica,
        "started_at": _as_utc(window.started),
        "ended_at": _as_utc(window.ended),
        "reference_id": window.reference_id,
        "resolution": window.resolution,
        "requests": window.requests,
        "first_drifting": drifting[0] if drifting else None,
        "data": json.dumps(window.to_data()),
    }


def _head(window: Window) -> dict[str, Any]:
    return {
        "window_id": window.window_id,
        "model": window.model,
        "version": window.version,
        "replica": window.replica,
        "started": window.started,
        "ended": window.ended,
        "reference_id": window.reference_id,
        "resolution": window.resolution,
    }


def _window(row: MonitorWindowRow) -> Window:
    head = {
        "window_id": row.window_id,
        "model": row.model_name,
        "version": row.model_version,
        "replica": row.replica,
        "started": _as_utc(row.started_at),
        "ended": _as_utc(row.ended_at),
        "reference_id": row.reference_id,
        "resolution": row.resolution,
    }
    return Window.from_data(head, json.loads(row.data))


def _reference_row(reference: Reference) -> dict[str, Any]:
    return {
        "model_name": reference.model,
        "model_version": reference.version,
        "reference_id": reference.reference_id,
        "created_at": _as_utc(reference.created_at),
        "source": reference.source,
        "requests": reference.requests,
        "data": json.dumps(reference.data()),
    }


def _reference(row: MonitorReferenceRow) -> Reference:
    head = {
        "reference_id": row.reference_id,
        "model": row.model_name,
        "version": row.model_version,
        "created_at": _as_utc(row.created_at),
        "source": row.source,
        "requests": row.requests,
    }
    return Reference.from_data(head, json.loads(row.data))


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _encode(window: Window) -> str:
    head = {**_head(window), "started": window.started.isoformat(), "ended": window.ended.isoformat()}
    return json.dumps({"head": head, "data": window.to_data()})


def _decode(text: str) -> Window:
    value = json.loads(text)
    head = value["head"]
    head["started"], head["ended"] = datetime.fromisoformat(head["started"]), datetime.fromisoformat(head["ended"])
    return Window.from_data(head, value["data"])


WINDOWS: Codec[Window] = Codec(
    _encode, _decode, lambda window: window.window_id, lambda store, window: store.save_window(window), "windows"
)


class SpoolingMonitorStore:
    """The monitor store as the monitor sees it: a window closed while the database is down waits in the
    spool (on disk, in order) and is stored exactly once when it returns."""

    def __init__(self, store: SqlMonitorStore, spool: Spool[Window], on_depth: Callable[[int], None]) -> None:
        self._store = store
        self._spool = spool
        self._on_depth = on_depth

    def save_window(self, window: Window) -> bool:
        if self._spool.depth:
            self.replay()
        if not self._spool.depth:
            try:
                return self._store.save_window(window)
            except StoreUnavailable:
                pass
        self._spool.put(window)
        self._on_depth(self._spool.depth)
        return True

    def replay(self) -> int:
        stored = self._spool.replay(self._store) if self._spool.depth else 0
        self._on_depth(self._spool.depth)
        return stored

    def list_windows(self, model: str, version: int | None, limit: int) -> list[Window]:
        return self._store.list_windows(model, version, limit)

    def roll_up(self, older_than: datetime) -> int:
        return self._store.roll_up(older_than)

    def prune(self, older_than: datetime) -> int:
        return self._store.prune(older_than)

    def get_window(self, window_id: str) -> Window:
        try:
            return self._store.get_window(window_id)
        except (NotFound, StoreUnavailable):
            waiting = self._spool.find(window_id)
            if waiting is None:
                raise
            return waiting

    def get_reference(self, model: str, version: int) -> Reference | None:
        return self._store.get_reference(model, version)

    def offer_reference(self, reference: Reference) -> Reference:
        return self._store.offer_reference(reference)

    def replace_reference(self, reference: Reference) -> Reference:
        return self._store.replace_reference(reference)
