"""The store at the edges its documentation names: retention to the second, the hourly prune, the
history's buckets and default end, schema versions, a finished minute written at once, and the
people in view saved and read back (issue 17: mutants that the behaviour tests left alive)."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from people_counter.outputs import store as store_module
from people_counter.outputs.store import (
    PRUNE_EVERY_S,
    CountReader,
    CountStore,
    StoreError,
    history,
    migrate,
    request_reset,
    saved_media_position,
    schema_version,
)
from people_counter.paths import database_path
from people_counter.stage_data import (
    Alert,
    CountingResult,
    LineSideSnapshot,
    LiveSnapshot,
    PersonEvent,
    Totals,
    TrackSnapshot,
)
from testsupport.store_queries import stored_events

DAY_S = 86400.0
NOW = 1_900_000_080.0  # a whole minute, and a multiple of 120 s
SCHEMA = 2  # the migrations this program knows (store.MIGRATIONS)


def events_at(store: CountStore, *times: float) -> None:
    totals = Totals()
    for track_id, ts in enumerate(times, start=1):
        totals.total += 1
        store.record(totals, CountingResult(events=(PersonEvent("enter", track_id, ts),)), 1, ts, track_id)


def test_retention_keeps_a_row_exactly_at_the_cutoff_and_drops_one_a_millisecond_older(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    try:
        cutoff = NOW - 30 * DAY_S
        events_at(store, cutoff - 0.001, cutoff, cutoff + 1.0)
        assert store.prune(NOW) == 2  # the older event, and its minute (which starts 60 s before the cutoff)
        kept = sorted(e.ts for e in stored_events(database_path(tmp_path)))
        assert kept == [cutoff, cutoff + 1.0]
    finally:
        store.close()


def test_flush_prunes_again_only_once_an_hour_has_passed(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=1)
    try:
        store.prune(NOW)  # the last prune, at NOW
        events_at(store, NOW - 2 * DAY_S)  # already past the retention
        store.flush(NOW + PRUNE_EVERY_S - 1.0)
        assert len(stored_events(database_path(tmp_path))) == 1  # not due yet: kept
        store.flush(NOW + PRUNE_EVERY_S)
        assert stored_events(database_path(tmp_path)) == []  # an hour after the last: pruned
    finally:
        store.close()


def test_history_buckets_are_whole_minutes_of_at_least_one(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        for minute in range(4):
            store.note_count(minute + 1, NOW + 60 * minute)
        store.flush(NOW + 240)
        reader = CountReader.open_readonly(database_path(tmp_path))
        try:

            def starts(bucket_s: int) -> list[float]:
                return [b.start_ts for b in reader.history(NOW, NOW + 240, bucket_s)]

            assert starts(30) == starts(60) == starts(119) == [NOW, NOW + 60, NOW + 120, NOW + 180]
            two = reader.history(NOW, NOW + 240, 120)
            assert [(b.start_ts - NOW, b.avg_count, b.max_count) for b in two] == [(0, 1.5, 2), (120, 3.5, 4)]
            assert [b.start_ts for b in reader.history(NOW + 30, NOW + 120)] == [NOW, NOW + 60]  # since, to its minute
        finally:
            reader.close()
    finally:
        store.close()


def test_history_without_an_end_reaches_the_current_minute(tmp_path: Path) -> None:
    now = time.time()
    store = CountStore(tmp_path)
    try:
        store.note_count(3, now)
        store.flush(now)
    finally:
        store.close()
    buckets = history(database_path(tmp_path), now - 600)
    assert [(b.start_ts, b.max_count) for b in buckets] == [(float(int(now // 60) * 60), 3)]
    assert history(tmp_path / "none.sqlite3", 0.0) == []


def minute_rows(state: Path) -> list[tuple[int, int, int, int]]:
    db = sqlite3.connect(f"file:{database_path(state)}?mode=ro", uri=True)
    try:
        return db.execute("SELECT minute_ts, samples, count_sum, count_max FROM minutes ORDER BY minute_ts").fetchall()
    finally:
        db.close()


def test_a_minute_is_written_when_the_next_begins_not_on_every_frame(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        store.note_count(2, NOW + 10)
        store.note_count(4, NOW + 50)
        assert minute_rows(tmp_path) == []  # frames are kept in memory
        store.note_count(1, NOW + 61)  # the first frame of the next minute writes the finished one
        assert minute_rows(tmp_path)[0] == (NOW, 2, 6, 4)
    finally:
        store.close()


def test_schema_versions(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "plain.sqlite3", isolation_level=None)
    try:
        assert schema_version(db) == 0  # no table at all
        assert migrate(db) == SCHEMA
        assert schema_version(db) == SCHEMA
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA + 1,))
        with pytest.raises(StoreError) as caught:
            migrate(db)
        assert str(caught.value) == (
            f"the database has schema version {SCHEMA + 1}, newer than this program knows ({SCHEMA}):"
            " it was written by a newer people-counter"
        )
    finally:
        db.close()


def live_snapshot(media_ts: float | None) -> LiveSnapshot:
    walker = TrackSnapshot(
        track_id=7,
        first_seen_ts=NOW - 5.0,
        last_seen_ts=NOW - 0.1,
        box=(10.0, 20.0, 70.0, 170.0),
        velocity=(12.5, -3.0),
        hits=42,
        lost=False,
        look=(0.6, 0.8),
        still_at=(40.0, 95.0),
        still_since_ts=NOW - 2.0,
    )
    lost = TrackSnapshot(8, NOW - 9.0, NOW - 4.0, (300.0, 20.0, 340.0, 120.0), (0.0, 0.0), 0, lost=True)
    return LiveSnapshot(
        clock_ts=NOW,
        media_ts=media_ts,
        tracks=(walker, lost),
        line_sides=(LineSideSnapshot(7, -1, (40.0, 170.0)),),
        loitering_alerted=(7,),
    )


@pytest.mark.parametrize("media_ts", [12.5, None])
def test_the_people_in_view_come_back_as_they_were_saved(tmp_path: Path, media_ts: float | None) -> None:
    saved = live_snapshot(media_ts)
    store = CountStore(tmp_path)
    try:
        assert store.load_live() is None
        store.record(Totals(total=1), CountingResult(), 1, NOW, 8, live=saved)
    finally:
        store.close()
    again = CountStore(tmp_path)
    try:
        assert again.load_live() == saved
    finally:
        again.close()
    assert saved_media_position(tmp_path) == media_ts


def test_no_media_position_without_a_database_or_a_saved_view(tmp_path: Path) -> None:
    assert saved_media_position(tmp_path) is None
    CountStore(tmp_path).close()
    assert saved_media_position(tmp_path) is None


def test_unreadable_saved_people_in_view_are_ignored(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        store.save_live(live_snapshot(3.0))
        db = sqlite3.connect(database_path(tmp_path), isolation_level=None)
        try:
            db.execute("UPDATE live_tracks SET snapshot = ?", ('{"clock_ts": 1.0}',))
        finally:
            db.close()
        assert store.load_live() is None
        assert saved_media_position(tmp_path) is None
    finally:
        store.close()


def test_load_gives_the_current_periods_totals_and_the_last_id_ever(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        totals = Totals(total=3, in_count=2, out_count=1, dwell_sum_s=9.0, dwell_count=2)
        store.record(totals, CountingResult(), 1, NOW, 5)
        assert store.load() == (Totals(3, 2, 1, 9.0, 2), 5)
        store.reset(NOW + 1.0)
        store.record(Totals(total=1), CountingResult(), 1, NOW + 2.0, 3)  # a lower id never lowers it
        assert store.load() == (Totals(1, 0, 0, 0.0, 0), 5)
    finally:
        store.close()


def test_alerts_come_back_newest_first_with_their_track(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        alerts = (Alert("occupancy", 12.0, 10.0, NOW), Alert("loitering", 65.0, 60.0, NOW + 1.0, track_id=4))
        store.record(Totals(), CountingResult(alerts=alerts), 12, NOW + 1.0, 4)
        assert store.recent_alerts() == [alerts[1], alerts[0]]
        assert store.recent_alerts(limit=1) == [alerts[1]]
    finally:
        store.close()


def test_a_state_directory_whose_parent_is_missing_is_made_and_the_database_is_in_wal(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "people-counter"
    store = CountStore(state)
    try:
        db = sqlite3.connect(f"file:{database_path(state)}?mode=ro", uri=True)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # while the counter has it open
        finally:
            db.close()
    finally:
        store.close()


def test_a_reset_from_outside_is_seen_once(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        assert store.reset_requested() is False
        store.reset(NOW)  # its own reset is not a request from outside
        assert store.reset_requested() is False
        request_reset(tmp_path, "test")
        assert store.reset_requested() is True
        assert store.reset_requested() is False
    finally:
        store.close()


def test_one_shot_history_takes_the_bucket(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    try:
        for minute in range(2):
            store.note_count(minute + 1, NOW + 60 * minute)
        store.flush(NOW + 120)
    finally:
        store.close()
    buckets = history(database_path(tmp_path), NOW, NOW + 120, bucket_s=120)
    assert [(b.start_ts, b.avg_count) for b in buckets] == [(NOW, 1.5)]


class LockedDatabase:
    """Another connection holding the write lock: the store's writes fail as on a failing disk."""

    def __init__(self, state: Path) -> None:
        self.db = sqlite3.connect(database_path(state), isolation_level=None)
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


@pytest.fixture
def quick_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50 ms busy timeout instead of 5 s: a locked database fails a write at once."""
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)


@pytest.mark.usefixtures("quick_busy")
def test_a_failing_write_is_held_retried_every_five_seconds_and_written_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    store = CountStore(tmp_path, clock=lambda: clock[0])
    try:
        lock = LockedDatabase(tmp_path)
        with caplog.at_level(logging.DEBUG, logger="people_counter.outputs.store"):
            events_at(store, NOW + 1.0)
            assert store.status == "degraded"
            store.reset(NOW + 2.0)  # a reset held too: its period has no id yet
            assert store.reset_requested() is False
            clock[0] += 4.9
            store.record(Totals(total=1), CountingResult(events=(PersonEvent("enter", 9, NOW + 3.0),)), 1, NOW + 3.0, 9)
            lock.release()
            store.flush(NOW + 3.5)  # 4.9 s after the failure: not retried yet
            assert store.status == "degraded" and stored_events(database_path(tmp_path)) == []
            clock[0] += 0.1
            store.flush(NOW + 3.6)  # 5 s after: written, in order, the reset between the two
            assert store.status == "ok"
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [
            f"store {database_path(tmp_path)} cannot write (database is locked): counting goes on in memory"
            " (1 records so far), retrying every 5 s"
        ]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"store {database_path(tmp_path)}: writing again after 5 s; the 3 records held in memory are written"
        ]
        assert [(e.track_id, e.ts) for e in stored_events(database_path(tmp_path))] == [(9, NOW + 3.0), (1, NOW + 1.0)]
        assert store.load() == (Totals(total=1), 9)  # the new period's totals
        assert store.period_id == 2
        assert store.reset_requested() is False
    finally:
        store.close()


@pytest.mark.usefixtures("quick_busy")
def test_close_tries_once_more_at_once_and_says_what_is_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    store = CountStore(tmp_path, clock=lambda: clock[0])
    lock = LockedDatabase(tmp_path)
    events_at(store, NOW + 1.0)
    lock.release()
    store.close()  # before the next retry is due: close does not wait for it
    assert [e.track_id for e in stored_events(database_path(tmp_path))] == [1]

    again = CountStore(tmp_path, clock=lambda: clock[0])
    lock = LockedDatabase(tmp_path)
    events_at(again, NOW + 2.0)
    with caplog.at_level(logging.ERROR, logger="people_counter.outputs.store"):
        again.close()
    lock.release()
    assert [r.getMessage() for r in caplog.records][-1] == (
        f"store {database_path(tmp_path)}: 1 records counted could not be written and are lost"
    )
