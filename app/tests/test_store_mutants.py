"""The store at the edges its documentation names: retention to the second, the hourly prune, the
history's buckets and default end, schema versions, a finished minute written at once, and the
people in view saved and read back (issue 17: mutants that the behaviour tests left alive)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from people_counter.outputs import store as store_module
from people_counter.outputs.store import (
    PRUNE_EVERY_S,
    RETRY_EVERY_S,
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


def test_unreadable_saved_people_in_view_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CountStore(tmp_path)
    try:
        store.save_live(live_snapshot(3.0))
        db = sqlite3.connect(database_path(tmp_path), isolation_level=None)
        try:
            db.execute("UPDATE live_tracks SET snapshot = ?", ('{"clock_ts": 1.0}',))
        finally:
            db.close()
        with caplog.at_level(logging.WARNING, logger="people_counter.outputs.store"):
            assert store.load_live() is None
        assert [r.getMessage() for r in caplog.records] == [
            "the saved people in view are unreadable, starting without them: 'media_ts'"
        ]
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
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.db.execute("ROLLBACK")
            self.db.close()
            self.released = True


@pytest.fixture
def quick_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 50 ms busy timeout instead of 5 s: a locked database fails a write at once."""
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 50)


@pytest.fixture
def locked_store(tmp_path: Path, quick_busy: None) -> Iterator[tuple[list[float], CountStore, LockedDatabase]]:
    """A store on a clock moved by hand (from 1000 s) whose database another connection holds locked."""
    clock = [1000.0]
    store = CountStore(tmp_path, clock=lambda: clock[0])
    lock = LockedDatabase(tmp_path)
    try:
        yield clock, store, lock
    finally:
        lock.release()
        store.close()


def test_a_failing_write_is_held_retried_every_five_seconds_and_written_in_order(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    locked_store: tuple[list[float], CountStore, LockedDatabase],
) -> None:
    clock, store, lock = locked_store
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


# -- the schema, the background checkpoints, and what the store says (issue 17: the mutants of the
# log lines, the checkpoint thread and the error messages that no test read)

SCHEMA_SQL = {
    "schema_version": "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "resets": "CREATE TABLE resets ( id INTEGER PRIMARY KEY, ts REAL NOT NULL, reason TEXT NOT NULL "
    "-- 'first start', 'command', 'daily'\n )",
    "totals": "CREATE TABLE totals ( period_id INTEGER PRIMARY KEY REFERENCES resets(id), total INTEGER NOT NULL "
    "DEFAULT 0, in_count INTEGER NOT NULL DEFAULT 0, out_count INTEGER NOT NULL DEFAULT 0, dwell_sum_s REAL NOT "
    "NULL DEFAULT 0, dwell_count INTEGER NOT NULL DEFAULT 0, last_track_id INTEGER NOT NULL DEFAULT 0, updated_ts "
    "REAL NOT NULL )",
    "events": "CREATE TABLE events ( id INTEGER PRIMARY KEY, ts REAL NOT NULL, type TEXT NOT NULL CHECK (type IN "
    "('enter', 'exit')), track_id INTEGER NOT NULL, duration_s REAL, period_id INTEGER NOT NULL )",
    "events_ts": "CREATE INDEX events_ts ON events(ts)",
    "crossings": "CREATE TABLE crossings ( id INTEGER PRIMARY KEY, ts REAL NOT NULL, track_id INTEGER NOT NULL, "
    "direction TEXT NOT NULL CHECK (direction IN ('in', 'out')), period_id INTEGER NOT NULL )",
    "crossings_ts": "CREATE INDEX crossings_ts ON crossings(ts)",
    "alerts": "CREATE TABLE alerts ( id INTEGER PRIMARY KEY, ts REAL NOT NULL, type TEXT NOT NULL CHECK (type IN "
    "('occupancy', 'loitering')), value REAL NOT NULL, threshold REAL NOT NULL, track_id INTEGER, period_id "
    "INTEGER NOT NULL )",
    "alerts_ts": "CREATE INDEX alerts_ts ON alerts(ts)",
    "minutes": "CREATE TABLE minutes ( minute_ts INTEGER PRIMARY KEY, samples INTEGER NOT NULL DEFAULT 0, count_sum "
    "INTEGER NOT NULL DEFAULT 0, count_max INTEGER NOT NULL DEFAULT 0, entries INTEGER NOT NULL DEFAULT 0, exits "
    "INTEGER NOT NULL DEFAULT 0, in_count INTEGER NOT NULL DEFAULT 0, out_count INTEGER NOT NULL DEFAULT 0 )",
    "live_tracks": "CREATE TABLE live_tracks ( id INTEGER PRIMARY KEY CHECK (id = 1), saved_ts REAL NOT NULL, "
    "snapshot TEXT NOT NULL )",
}
"""The schema the released migrations make, as SQLite keeps it (white space folded). A released
migration is never edited (store.MIGRATIONS): a database made by an older release must be the same
as one made now, so any change here is a new migration."""


def test_the_schema_is_exactly_what_the_released_migrations_made(tmp_path: Path) -> None:
    CountStore(tmp_path).close()
    db = sqlite3.connect(database_path(tmp_path))
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    finally:
        db.close()
    assert {name: " ".join(sql.split(" \n")).split() for name, sql in rows} == {
        name: sql.split() for name, sql in SCHEMA_SQL.items()
    }


def test_each_migration_is_logged_once_with_its_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="people_counter.outputs.store"):
        CountStore(tmp_path).close()
        CountStore(tmp_path).close()  # nothing left to migrate: nothing said
    assert [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()] == [
        "database migrated to schema version 1",
        "database migrated to schema version 2",
    ]


def test_a_prune_says_how_many_rows_of_how_many_days_it_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CountStore(tmp_path)  # the default retention: 30 days
    try:
        events_at(store, NOW - 30 * DAY_S - 120.0, NOW - 30 * DAY_S + 1.0)
        with caplog.at_level(logging.DEBUG, logger="people_counter.outputs.store"):
            assert store.prune(NOW) == 2  # the older event and its minute
            assert store.prune(NOW) == 0  # nothing more: nothing said
        assert [r.getMessage() for r in caplog.records if "pruned" in r.getMessage()] == [
            "pruned 2 rows older than 30 days"
        ]
    finally:
        store.close()


def test_an_incomplete_migration_statement_is_named_by_its_first_60_characters(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "scratch.sqlite3", isolation_level=None)
    try:
        statement = "CREATE TABLE half_written (first_column INTEGER, second_column TEXT, third"
        with pytest.raises(ValueError) as raised:
            store_module._run_script(db, statement)
        assert str(raised.value) == f"incomplete SQL statement in a migration: {statement[:60]}"
    finally:
        db.close()


def test_a_damaged_database_is_one_store_error_naming_the_file(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database, " * 200)
    with pytest.raises(StoreError) as raised:
        CountStore(tmp_path)
    assert str(raised.value) == f"{path}: cannot open the database: file is not a database"


def test_a_database_that_a_migration_cannot_take_is_one_store_error_naming_the_file(tmp_path: Path) -> None:
    path = database_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE resets (anything)")  # in the way of the first migration
    db.close()
    with pytest.raises(StoreError) as raised:
        CountStore(tmp_path)
    assert str(raised.value) == f"{path}: table resets already exists"


@pytest.mark.usefixtures("quick_busy")
def test_a_database_that_cannot_switch_to_wal_is_used_in_its_mode_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    CountStore(tmp_path).close()  # the last writer leaves the file in rollback-journal mode
    path = database_path(tmp_path)
    # A reader in the middle of a read: the switch to WAL needs the file to itself and is refused,
    # while everything else goes on.
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM events").fetchone()
        with caplog.at_level(logging.WARNING, logger="people_counter.outputs.store"):
            db = store_module._connect(path)
    finally:
        reader.close()
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.isolation_level is None  # autocommit: the store opens its transactions itself
    finally:
        db.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: could not switch to WAL (journal mode unchanged: database is locked); commits will be slower"
    ]


@pytest.mark.usefixtures("quick_busy")
def test_a_prune_that_fails_in_flush_degrades_the_store_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    store = CountStore(tmp_path, clock=lambda: clock[0])
    try:

        def failing_prune(now: float) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "prune", failing_prune)
        events_at(store, NOW)
        with caplog.at_level(logging.ERROR, logger="people_counter.outputs.store"):
            store.flush(NOW + PRUNE_EVERY_S)  # the record is written; the prune due now fails
        assert store.status == "degraded"
        assert [e.track_id for e in stored_events(database_path(tmp_path))] == [1]
        assert [r.getMessage() for r in caplog.records] == [
            f"store {database_path(tmp_path)} cannot write (disk I/O error): counting goes on in memory"
            " (0 records so far), retrying every 5 s"
        ]
    finally:
        store.close()


def test_a_lasting_failure_is_complained_about_once_a_minute_on_the_stores_clock(
    caplog: pytest.LogCaptureFixture, locked_store: tuple[list[float], CountStore, LockedDatabase]
) -> None:
    clock, store, _lock = locked_store
    with caplog.at_level(logging.ERROR, logger="people_counter.outputs.store"):
        events_at(store, NOW)  # fails at 1000 s: the first complaint
        for _ in range(12):  # retried every 5 s: 1005 to 1060 s
            clock[0] += RETRY_EVERY_S
            store.flush(NOW + 1.0)
    # Again exactly a minute after the first, and not in between.
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 2
    assert store.status == "degraded"


def wal_frames_in_the_file(path: Path) -> int:
    """How many pages the database file itself holds (what checkpoints copy there from the WAL)."""
    return path.stat().st_size // 4096


def test_the_background_checkpoint_copies_the_wal_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        writer.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies pages
        writer.execute("CREATE TABLE rows (payload TEXT)")
        writer.executemany("INSERT INTO rows VALUES (?)", [("x" * 500,) for _ in range(200)])
        before = wal_frames_in_the_file(path)
        checkpointer = store_module._Checkpointer(path, every_s=0.01)
        try:
            thread = checkpointer._thread
            # Its own thread, named for a stack dump, that never keeps the process from exiting.
            assert thread.name == "sqlite-checkpoint" and thread.daemon
            deadline = time.monotonic() + 30  # bounds a hang only: it checkpoints every 10 ms
            while wal_frames_in_the_file(path) <= before:
                assert thread.is_alive(), "the checkpoint thread died"
                assert time.monotonic() < deadline, "no checkpoint copied the WAL into the file"
                time.sleep(0.01)
        finally:
            checkpointer.stop()
        assert not thread.is_alive()
    finally:
        writer.close()


def test_the_store_checkpoints_its_own_file_until_it_is_closed(tmp_path: Path) -> None:
    store = CountStore(tmp_path)
    thread = store._checkpointer._thread
    try:
        assert store._checkpointer._path == database_path(tmp_path)
        assert thread.is_alive() and thread.name == "sqlite-checkpoint"
    finally:
        store.close()
    assert not thread.is_alive()


def test_no_background_checkpoints_when_the_file_cannot_be_opened_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="people_counter.outputs.store"):
        checkpointer = store_module._Checkpointer(tmp_path / "missing" / "counts.sqlite3", every_s=0.01)
        checkpointer._thread.join(30)
        checkpointer.stop()
    assert [r.getMessage() for r in caplog.records] == ["no background checkpoints: unable to open database file"]


def test_a_checkpoint_that_fails_is_skipped_with_a_debug_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = sqlite3.connect(tmp_path / "closed.sqlite3")
    db.close()
    with caplog.at_level(logging.DEBUG, logger="people_counter.outputs.store"):
        store_module._Checkpointer.checkpoint(db)  # never raises: the next one tries again
    assert [r.getMessage() for r in caplog.records] == ["checkpoint skipped: Cannot operate on a closed database."]
