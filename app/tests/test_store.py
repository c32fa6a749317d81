"""CountStore on a real SQLite file: durability, migrations, retention, resets, aggregates."""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from people_counter.outputs.store import (
    MIGRATIONS,
    CountStore,
    StoreError,
    history,
    migrate,
    open_readonly,
    recent_alerts,
    request_reset,
    schema_version,
)
from people_counter.paths import database_path
from people_counter.stage_data import (
    Alert,
    CountingResult,
    LineCrossing,
    LineSideSnapshot,
    LiveSnapshot,
    PersonEvent,
    Totals,
    TrackSnapshot,
)
from testsupport.store_queries import stored_events

APP_DIR = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def enter(track_id: int, ts: float) -> CountingResult:
    return CountingResult(events=(PersonEvent("enter", track_id, ts),))


def leave(track_id: int, ts: float, duration_s: float) -> CountingResult:
    return CountingResult(
        events=(PersonEvent("exit", track_id, ts, duration_s),),
        crossings=(LineCrossing(track_id, "in", ts),),
    )


def test_totals_survive_reopen(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    assert store.load() == (Totals(), 0)
    totals = Totals(total=3, in_count=2, out_count=1, dwell_sum_s=12.5, dwell_count=2)
    store.record(totals, enter(41, T0), count=2, ts=T0, last_track_id=41)
    store.close()

    again = CountStore(tmp_path, retention_days=30)
    assert again.load() == (totals, 41)
    assert [e.track_id for e in stored_events(database_path(tmp_path))] == [41]
    again.close()
    assert database_path(tmp_path).stat().st_mode & 0o777 == 0o640


CRASHING_COUNTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from people_counter.stage_data import CountingResult, PersonEvent, Totals
    from people_counter.outputs.store import CountStore
    store = CountStore(Path(sys.argv[1]), retention_days=30)
    totals = Totals()
    for track_id in range(1, 101):
        totals.total += 1
        result = CountingResult(events=(PersonEvent("enter", track_id, 1.8e9 + track_id),))
        store.note_count(track_id % 5, 1.8e9 + track_id)
        store.record(totals, result, count=track_id % 5, ts=1.8e9 + track_id, last_track_id=track_id)
    print("recorded", flush=True)
    time.sleep(60)
    """
)


def test_kill_9_loses_nothing_recorded(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_COUNTER, str(tmp_path)], cwd=APP_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recorded"
    finally:
        os.kill(child.pid, signal.SIGKILL)  # no close(), no flush: a crash
        child.wait()
    store = CountStore(tmp_path, retention_days=3650)
    totals, last_track_id = store.load()
    assert (totals.total, last_track_id) == (100, 100)
    assert len(stored_events(database_path(tmp_path))) == 100
    # Each record() merged the minute aggregates too.
    assert sum(b.entries for b in store.history(1.8e9 - 60, 1.8e9 + 200)) == 100
    store.close()


def test_a_db_without_schema_version_migrates(tmp_path: Path) -> None:
    # A file from before the schema existed (version 0): an empty SQLite database.
    path = database_path(tmp_path)
    sqlite3.connect(path).close()
    store = CountStore(tmp_path, retention_days=30)
    assert schema_version(store._db) == len(MIGRATIONS)
    assert store.load() == (Totals(), 0)
    store.close()


def test_an_old_version_migrates_once_and_keeps_its_data(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    store.record(Totals(total=1), enter(1, T0), count=1, ts=T0, last_track_id=1)
    store.close()

    calls: list[int] = []

    def add_zone(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("ALTER TABLE events ADD COLUMN zone TEXT NOT NULL DEFAULT 'door'")

    known = len(MIGRATIONS)
    newer = (*MIGRATIONS, add_zone)
    db = sqlite3.connect(database_path(tmp_path), isolation_level=None)
    assert schema_version(db) == known
    assert migrate(db, newer) == known + 1
    assert migrate(db, newer) == known + 1  # already there: nothing runs again
    assert calls == [1]
    assert db.execute("SELECT track_id, zone FROM events").fetchall() == [(1, "door")]
    db.close()

    # This program knows only the versions before: a newer database is refused with a clear error.
    with pytest.raises(StoreError, match=f"schema version {known + 1}, newer than this program knows"):
        CountStore(tmp_path, retention_days=30)


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    CountStore(tmp_path, retention_days=30).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk says no")

    db = sqlite3.connect(database_path(tmp_path), isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, (*MIGRATIONS, broken))
    assert schema_version(db) == len(MIGRATIONS)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    db.close()


def test_retention_prunes_old_rows_and_on_start(tmp_path: Path) -> None:
    now = time.time()
    long_ago = now - 40 * 86400
    store = CountStore(tmp_path, retention_days=30)
    old = CountingResult(
        events=(PersonEvent("enter", 1, long_ago),),
        crossings=(LineCrossing(1, "out", long_ago),),
        alerts=(Alert("loitering", 70.0, 60.0, long_ago, 1),),
    )
    store.note_count(1, long_ago)
    store.record(Totals(total=1, out_count=1), old, count=1, ts=long_ago, last_track_id=1)
    store.record(Totals(total=2, out_count=1), enter(2, now), count=1, ts=now, last_track_id=2)
    assert store.prune(now) == 4  # the old event, crossing, alert and minute
    assert [e.track_id for e in stored_events(database_path(tmp_path))] == [2]
    assert store.recent_alerts() == []
    assert store.load()[0].total == 2  # totals are not history: never pruned
    # Rows that aged past the retention while the counter was down go at the next start.
    store.record(Totals(total=3, out_count=1), enter(3, long_ago), count=1, ts=long_ago, last_track_id=3)
    store.close()
    again = CountStore(tmp_path, retention_days=30)
    assert [e.track_id for e in stored_events(database_path(tmp_path))] == [2]
    again.close()


def test_reset_command_starts_from_zero_and_keeps_history(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    store.record(Totals(total=5, in_count=3), enter(17, T0), count=2, ts=T0, last_track_id=17)
    assert not store.reset_requested()
    first_period = store.period_id

    request_reset(tmp_path)  # `people-counter reset` while the counter runs
    assert store.reset_requested()
    assert not store.reset_requested()  # once
    assert store.load() == (Totals(), 17)  # zero totals, track ids continue
    store.record(Totals(total=1), enter(18, T0 + 5), count=1, ts=T0 + 5, last_track_id=18)

    assert [e.track_id for e in stored_events(database_path(tmp_path))] == [18, 17]  # history stays
    row = store._db.execute("SELECT total, in_count FROM totals WHERE period_id = ?", (first_period,))
    assert row.fetchone() == (5, 3)  # the finished period keeps its figures
    store.close()
    reopened = CountStore(tmp_path, retention_days=30)
    assert reopened.load() == (Totals(total=1), 18)
    reopened.close()


def test_reset_without_a_running_counter_and_daily_reset(tmp_path: Path) -> None:
    request_reset(tmp_path / "fresh")  # no database yet: it is created
    store = CountStore(tmp_path / "fresh", retention_days=30)
    assert store.load() == (Totals(), 0)
    store.record(Totals(total=2), enter(2, T0), count=1, ts=T0, last_track_id=2)
    store.reset(T0 + 10)  # the daily reset, from the running pipeline
    assert not store.reset_requested()  # its own reset is not news
    assert store.load() == (Totals(), 2)
    reasons = store._db.execute("SELECT reason FROM resets ORDER BY id").fetchall()
    assert [r[0] for r in reasons] == ["first start", "command", "daily"]
    store.close()


def test_per_minute_aggregates(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    # Minute 0: 10 fps, 3 people in view for 30 s, then 1; one entry and one exit with a crossing.
    for frame in range(600):
        ts = T0 + frame / 10
        store.note_count(3 if frame < 300 else 1, ts)
        if frame == 100:
            store.record(Totals(total=1), enter(1, ts), count=3, ts=ts, last_track_id=1)
        if frame == 400:
            store.record(Totals(total=1, in_count=1), leave(1, ts, 30.0), count=1, ts=ts, last_track_id=1)
    # Minute 1: nobody; crossing into minute 2 flushes minute 1 without record() or flush().
    for frame in range(600, 1200):
        store.note_count(0, T0 + frame / 10)
    store.note_count(4, T0 + 120)

    minutes = store.history(T0, T0 + 180, bucket_s=60)
    assert [(b.start_ts, b.avg_count, b.max_count, b.entries, b.exits, b.in_count) for b in minutes] == [
        (T0, 2.0, 3, 1, 1, 1),
        (T0 + 60, 0.0, 0, 0, 0, 0),
        (T0 + 120, 4.0, 4, 0, 0, 0),
    ]
    two = store.history(T0, T0 + 180, bucket_s=120)
    assert [(b.start_ts, b.avg_count, b.max_count, b.entries) for b in two] == [(T0, 1.0, 3, 1), (T0 + 120, 4.0, 4, 0)]
    store.close()
    # A minute that only record() touched (no per-frame samples) reports its maximum.
    again = CountStore(tmp_path, retention_days=30)
    again.record(Totals(total=2), enter(2, T0 + 600), count=5, ts=T0 + 600, last_track_id=2)
    assert again.history(T0 + 600, T0 + 660) == [(T0 + 600, 5.0, 1, 0, 5, 0, 0)]
    again.close()
    # The dashboard's one-shot helper reads the same rows from the file.
    rows = history(database_path(tmp_path), T0, T0 + 180)
    assert [tuple(r[:4]) for r in rows] == [(T0, 2.0, 1, 1), (T0 + 60, 0.0, 0, 0), (T0 + 120, 4.0, 0, 0)]
    assert history(tmp_path / "absent.sqlite3", T0) == []


def test_readonly_reader_sees_the_writer(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    alert = Alert("occupancy", 12.0, 10.0, T0, None)
    store.record(Totals(total=4), CountingResult(alerts=(alert,)), count=12, ts=T0, last_track_id=9)
    reader = open_readonly(database_path(tmp_path))
    assert reader.recent_alerts() == [alert]
    assert recent_alerts(database_path(tmp_path)) == [{"type": "occupancy", "value": 12.0, "threshold": 10.0, "ts": T0}]
    later = Alert("occupancy", 13.0, 10.0, T0 + 1, None)
    store.record(Totals(total=5), CountingResult(alerts=(later,)), count=13, ts=T0 + 1, last_track_id=10)
    assert reader.recent_alerts() == [later, alert]  # each query sees the latest commit
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._db.execute("DELETE FROM events")
    reader.close()
    store.close()
    with pytest.raises(StoreError, match="cannot open the database read-only"):
        open_readonly(tmp_path / "nothing.sqlite3")


def test_record_is_one_commit_and_its_cost_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """record() is one transaction whatever the history's size (its cost on a disk is one WAL append:
    no fsync, no checkpoint). The median cost of record() on this disk is printed, not asserted:
    speed is `make bench`'s to measure, and a loaded machine would make any bound on it flaky."""
    store = CountStore(tmp_path, retention_days=30)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    totals = Totals()
    costs = []
    for track_id in range(300):
        ts = T0 + track_id * 0.1
        totals.total += 1
        store.note_count(2, ts)
        statements.clear()
        started = time.perf_counter()
        store.record(totals, leave(track_id, ts, 3.0), count=2, ts=ts, last_track_id=track_id)
        costs.append((time.perf_counter() - started) * 1000)
        begins = [s for s in statements if s.startswith("BEGIN")]
        commits = [s for s in statements if s == "COMMIT"]
        assert (begins, commits) == (["BEGIN IMMEDIATE"], ["COMMIT"]), statements
        assert not any("checkpoint" in s for s in statements), statements
    store._db.set_trace_callback(None)
    store.close()
    median = statistics.median(costs)
    p95 = statistics.quantiles(costs, n=20)[-1]
    with capsys.disabled():
        print(f"\nCountStore.record(): median {median:.3f} ms, p95 {p95:.3f} ms over {len(costs)} calls")


READER = """
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT total FROM totals ORDER BY period_id DESC LIMIT 1").fetchone()[0])
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_a_group_reader_without_write_access_reads_while_running_and_after_a_stop() -> None:
    """The dashboard's user can read the file whether the counter runs or not (WAL -shm pitfall)."""
    # pytest's tmp_path sits under a private directory; another user needs a path it can reach.
    with tempfile.TemporaryDirectory(prefix="store-ro-", dir="/var/tmp") as top:
        state = Path(top)
        state.chmod(0o755)  # others may not create files here, like a real state directory
        _read_while_running_and_after_a_stop(state)


def _read_while_running_and_after_a_stop(state: Path) -> None:
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", READER]

    def read_as_nobody() -> str:
        for name in os.listdir(state):
            os.chown(state / name, 0, 65534)  # group nogroup, mode 0640 from the store
        result = subprocess.run(
            [*command, str(database_path(state))],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or result.stderr.strip().splitlines()[-1]

    store = CountStore(state, retention_days=30)
    store.record(Totals(total=3), enter(1, T0), count=1, ts=T0, last_track_id=1)
    assert read_as_nobody() == "3"  # while the counter runs (WAL, -shm present)
    store.close()
    assert read_as_nobody() == "3"  # after a clean stop
    request_reset(state)
    assert read_as_nobody() == "0"  # after `people-counter reset` with no counter running


def test_live_snapshot_round_trips_and_is_saved_with_the_totals(tmp_path: Path) -> None:
    live = LiveSnapshot(
        clock_ts=T0,
        media_ts=12.5,
        tracks=(
            TrackSnapshot(
                7, T0 - 3.0, T0 - 0.1, (1.0, 2.0, 3.0, 4.0), (0.5, -0.5), 12, False, (0.6, 0.8), (2.0, 3.0), T0 - 2.0
            ),
            TrackSnapshot(5, T0 - 9.0, T0 - 4.0, (5.0, 6.0, 7.0, 8.0), (0.0, 0.0), 0, True),
        ),
        line_sides=(LineSideSnapshot(7, -1, (2.0, 4.0)),),
        loitering_alerted=(7,),
    )
    store = CountStore(tmp_path, retention_days=30)
    assert store.load_live() is None
    store.record(Totals(total=7), enter(7, T0), count=1, ts=T0, last_track_id=7, live=live)
    store.close()
    store = CountStore(tmp_path, retention_days=30)
    assert store.load_live() == live
    emptied = LiveSnapshot(clock_ts=T0 + 1.0, media_ts=None, tracks=())
    store.save_live(emptied)
    store.close()
    store = CountStore(tmp_path, retention_days=30)
    assert store.load_live() == emptied
    store.close()


def test_one_record_with_several_of_each_adds_them_all_to_its_minute(tmp_path: Path) -> None:
    """A frame on which two people enter, two leave, and crossings go both ways twice."""
    store = CountStore(tmp_path, retention_days=30)
    result = CountingResult(
        events=(
            PersonEvent("enter", 1, T0),
            PersonEvent("enter", 2, T0),
            PersonEvent("exit", 3, T0, 5.0),
            PersonEvent("exit", 4, T0, 7.0),
        ),
        crossings=(
            LineCrossing(1, "in", T0),
            LineCrossing(2, "in", T0),
            LineCrossing(3, "out", T0),
            LineCrossing(4, "out", T0),
        ),
    )
    store.record(Totals(total=2, in_count=2, out_count=2), result, count=2, ts=T0, last_track_id=4)
    (minute,) = store.history(T0, T0 + 60)  # written by record() itself
    assert (minute.entries, minute.exits, minute.in_count, minute.out_count, minute.max_count) == (2, 2, 2, 2, 2)
    for second, count in enumerate([1, 2, 2]):
        store.note_count(count, T0 + second)
    store.flush(T0 + 3)
    (minute,) = store.history(T0, T0 + 60)
    assert minute.avg_count == 1.67  # (1 + 2 + 2) / 3, to two decimals
    store.close()


def test_recent_alerts_keep_their_track_and_the_newest_fifty_by_default(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    for i in range(60):
        alert = Alert("loitering", 61.0 + i, 60.0, T0 + i, track_id=i)
        store.record(Totals(), CountingResult(alerts=(alert,)), count=1, ts=T0 + i, last_track_id=i)
    alerts = store.recent_alerts()
    assert len(alerts) == 50
    assert (alerts[0].track_id, alerts[0].type, alerts[0].ts) == (59, "loitering", T0 + 59)
    store.close()
    assert len(recent_alerts(database_path(tmp_path))) == 20
