"""Monitoring windows and references in SQL, on SQLite and PostgreSQL alike: written once, read newest first,
one reference per version (the first replica's), rolled up into hours exactly, and spooled through an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from layerscope.service.domain.summary import summarize
from layerscope.service.errors import NotFound, StoreUnavailable
from layerscope.service.monitoring.drift import Reference, build_layer_reference
from layerscope.service.monitoring.window import LayerDrift, LayerWindow, Window
from layerscope.service.store.monitor_store import WINDOWS, SpoolingMonitorStore, SqlMonitorStore
from layerscope.service.store.spool import Spool

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
RNG = np.random.default_rng(0)
SUMMARIES = [summarize(np.maximum(RNG.normal(size=(16, 8)), 0).astype(np.float32)) for _ in range(20)]
LAYER = build_layer_reference(SUMMARIES, seed=1)


def window(i: int, replica: str = "a", reference_id: str | None = "ref-1", minutes: int = 5) -> Window:
    layer = LayerWindow()
    for summary in SUMMARIES[i % 5 : i % 5 + 6]:
        layer.add(summary, LAYER.edges)
    started = START + timedelta(minutes=minutes * i)
    return Window(
        window_id=f"w-{replica}-{i}",
        model="digits",
        version=1,
        replica=replica,
        started=started,
        ended=started + timedelta(minutes=minutes),
        reference_id=reference_id,
        layers={"dense": layer},
        drift={"dense": LayerDrift(1.5, 30.0, 20.0, True, "scale")},
        edges={"dense": LAYER.edges},
    )


def reference(reference_id: str, source: str = "traffic") -> Reference:
    return Reference(reference_id, "digits", 1, START, source, 20, {"dense": LAYER})


@pytest.fixture()
def monitor_store(engine: sa.Engine) -> SqlMonitorStore:
    return SqlMonitorStore(engine)


def test_a_window_is_stored_once_and_reads_back_whole(monitor_store: SqlMonitorStore) -> None:
    assert monitor_store.save_window(window(0)) is True
    assert monitor_store.save_window(window(0)) is False  # a retry, or a replayed spool file
    back = monitor_store.get_window("w-a-0")
    assert back.started == START and back.replica == "a" and back.drifting == ["dense"]
    np.testing.assert_allclose(back.layers["dense"].feature_sum, window(0).layers["dense"].feature_sum)
    np.testing.assert_allclose(back.edges["dense"], LAYER.edges)
    with pytest.raises(NotFound, match="no window has id 'w-nope'"):
        monitor_store.get_window("w-nope")


def test_windows_list_newest_first_from_every_replica(monitor_store: SqlMonitorStore) -> None:
    for i in range(3):
        monitor_store.save_window(window(i, "a"))
        monitor_store.save_window(window(i, "b"))
    listed = monitor_store.list_windows("digits", 1, 4)
    assert [w.ended for w in listed] == sorted((w.ended for w in listed), reverse=True)
    assert {w.replica for w in listed} == {"a", "b"} and len(listed) == 4
    assert monitor_store.list_windows("digits", 2, 4) == []


def test_the_first_reference_offered_is_the_one_every_replica_gets(monitor_store: SqlMonitorStore) -> None:
    assert monitor_store.get_reference("digits", 1) is None
    first = monitor_store.offer_reference(reference("ref-a"))
    second = monitor_store.offer_reference(reference("ref-b"))
    assert first.reference_id == second.reference_id == "ref-a"
    np.testing.assert_allclose(second.layers["dense"].variance, LAYER.variance)
    monitor_store.replace_reference(reference("ref-w", "window:w-a-0"))  # a caller's choice replaces it
    stored = monitor_store.get_reference("digits", 1)
    assert stored is not None and (stored.reference_id, stored.source) == ("ref-w", "window:w-a-0")


def test_windows_older_than_a_day_roll_up_into_hours_exactly(monitor_store: SqlMonitorStore) -> None:
    windows = [window(i) for i in range(12)] + [window(0, "b")]  # one hour of 5-minute windows, two replicas
    for w in windows:
        monitor_store.save_window(w)
    merged = monitor_store.roll_up(START + timedelta(hours=2))
    assert merged == 13
    hours = monitor_store.list_windows("digits", 1, 100)
    assert sorted(w.replica for w in hours) == ["a", "b"] and all(w.resolution == "hour" for w in hours)
    hour = next(w for w in hours if w.replica == "a")
    assert hour.started == START and hour.ended == START + timedelta(hours=1)
    expected = sum((w.layers["dense"].feature_sum for w in windows[:12]), np.zeros_like(LAYER.mean))
    np.testing.assert_allclose(hour.layers["dense"].feature_sum, expected)
    assert hour.layers["dense"].requests == 12 * 6
    # A later pass adds late windows of the same hour to its roll-up instead of a second one.
    monitor_store.save_window(window(5, "a", minutes=1))
    assert monitor_store.roll_up(START + timedelta(hours=2)) == 1
    assert len(monitor_store.list_windows("digits", 1, 100)) == 2
    assert monitor_store.prune(START + timedelta(hours=3)) == 2


class Outage:
    """The SQL store behind a switch: down raises StoreUnavailable, as an unreachable database does."""

    def __init__(self, store: SqlMonitorStore) -> None:
        self.store = store
        self.down = True

    def __getattr__(self, name: str) -> object:
        if self.down:
            raise StoreUnavailable("The run database is unreachable: test outage")
        return getattr(self.store, name)


def test_windows_closed_during_an_outage_land_exactly_once(monitor_store: SqlMonitorStore, tmp_path: Path) -> None:
    outage = Outage(monitor_store)
    depths: list[int] = []
    spooling = SpoolingMonitorStore(outage, Spool(tmp_path / "windows", 10, WINDOWS), depths.append)  # type: ignore[arg-type]
    for i in range(3):
        assert spooling.save_window(window(i)) is True
    assert depths[-1] == 3
    assert spooling.get_window("w-a-1").window_id == "w-a-1"  # readable from the spool meanwhile
    # A restart in the middle: a new spool object over the same folder finds the windows in order.
    outage.down = False
    reopened = SpoolingMonitorStore(outage, Spool(tmp_path / "windows", 10, WINDOWS), depths.append)  # type: ignore[arg-type]
    assert reopened.replay() == 3 and depths[-1] == 0
    assert reopened.replay() == 0
    assert sorted(w.window_id for w in monitor_store.list_windows("digits", 1, 10)) == ["w-a-0", "w-a-1", "w-a-2"]
    assert reopened.save_window(window(1)) is False  # stored once, whoever retries
