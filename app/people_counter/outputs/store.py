"""SQLite under the state directory: totals, events, crossings, alerts and per-minute aggregates.

Durability: the database runs in WAL mode with synchronous=NORMAL, and record() commits every
call. A commit is in the WAL file (the OS page cache) when record() returns, so a killed
process (kill -9, OOM, crash) loses nothing already recorded. A power loss may roll back the
commits since the WAL was last synced; a background thread checkpoints about once a minute,
which syncs it, so at most about a minute of counts is lost then, and the file stays
consistent. The checkpoints (and their fsyncs, 15 ms typical, over 100 ms at times on this
machine's disk) run off the counting thread: SQLite's automatic checkpoint, which would run
inside whichever commit crosses 1000 WAL pages, is left only as a safety net at 10000 pages.

Count periods: every reset (`people-counter reset`, the daily reset, or the first start) adds a
row to `resets`; the totals of a period live in `totals` under that row's id, so a reset starts
from zero and keeps the history. A running counter notices a reset made by another process
through reset_requested(), which compares the newest period id with its own.

A full or read-only disk (any sqlite3.OperationalError on a write) never stops the counting: the
store turns `degraded`, keeps what it was given in memory (the results with the totals after each,
the resets, the minute figures and the newest people in view) and tries again every
RETRY_EVERY_S; the first write that succeeds writes all of it, in order, in one transaction. It
says so in one line when it starts, at most once a minute while it lasts, and once when it ends.

Readers: the dashboard opens the file read-only (CountReader.open_readonly, or the one-shot
history() and recent_alerts()). The file, and the -wal and -shm files SQLite makes next to it,
are mode 0640; the state directory should be setgid to the shared group so that they carry it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, cast

from people_counter.errors import EXIT_STORE, UserError
from people_counter.paths import database_path
from people_counter.stage_data import (
    Alert,
    CountingResult,
    LineSideSnapshot,
    LiveSnapshot,
    Totals,
    TrackSnapshot,
)

log = logging.getLogger("people_counter.outputs.store")

BUSY_TIMEOUT_MS = 5000
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 60.0
WAL_SAFETY_CHECKPOINT_PAGES = 10_000
WAL_SIZE_LIMIT_BYTES = 8 << 20
RETRY_EVERY_S = 5.0
"""How often a degraded store tries to write again."""
COMPLAIN_EVERY_S = 60.0
"""How often a degraded store says so again in the log."""
DB_MODE = 0o640
"""The dashboard's user reads the database through the shared group."""


class StoreError(UserError):
    """The database cannot be opened or has a schema this version does not know."""

    exit_status = EXIT_STORE


# -- schema ------------------------------------------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: executescript() would COMMIT the migration's transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {statement.strip()[:60]}")


def _v1_initial(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        CREATE TABLE resets (
            id         INTEGER PRIMARY KEY,
            ts         REAL NOT NULL,
            reason     TEXT NOT NULL          -- 'first start', 'command', 'daily'
        );
        CREATE TABLE totals (
            period_id     INTEGER PRIMARY KEY REFERENCES resets(id),
            total         INTEGER NOT NULL DEFAULT 0,
            in_count      INTEGER NOT NULL DEFAULT 0,
            out_count     INTEGER NOT NULL DEFAULT 0,
            dwell_sum_s   REAL    NOT NULL DEFAULT 0,
            dwell_count   INTEGER NOT NULL DEFAULT 0,
            last_track_id INTEGER NOT NULL DEFAULT 0,
            updated_ts    REAL    NOT NULL
        );
        CREATE TABLE events (
            id         INTEGER PRIMARY KEY,
            ts         REAL NOT NULL,
            type       TEXT NOT NULL CHECK (type IN ('enter', 'exit')),
            track_id   INTEGER NOT NULL,
            duration_s REAL,
            period_id  INTEGER NOT NULL
        );
        CREATE INDEX events_ts ON events(ts);
        CREATE TABLE crossings (
            id         INTEGER PRIMARY KEY,
            ts         REAL NOT NULL,
            track_id   INTEGER NOT NULL,
            direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            period_id  INTEGER NOT NULL
        );
        CREATE INDEX crossings_ts ON crossings(ts);
        CREATE TABLE alerts (
            id         INTEGER PRIMARY KEY,
            ts         REAL NOT NULL,
            type       TEXT NOT NULL CHECK (type IN ('occupancy', 'loitering')),
            value      REAL NOT NULL,
            threshold  REAL NOT NULL,
            track_id   INTEGER,
            period_id  INTEGER NOT NULL
        );
        CREATE INDEX alerts_ts ON alerts(ts);
        -- One row a minute: people in view (max, and sum/samples for the mean), entries, exits,
        -- and line crossings. minute_ts is the Unix time of the minute's start.
        CREATE TABLE minutes (
            minute_ts  INTEGER PRIMARY KEY,
            samples    INTEGER NOT NULL DEFAULT 0,
            count_sum  INTEGER NOT NULL DEFAULT 0,
            count_max  INTEGER NOT NULL DEFAULT 0,
            entries    INTEGER NOT NULL DEFAULT 0,
            exits      INTEGER NOT NULL DEFAULT 0,
            in_count   INTEGER NOT NULL DEFAULT 0,
            out_count  INTEGER NOT NULL DEFAULT 0
        );
        """,
    )


def _v2_live_tracks(db: sqlite3.Connection) -> None:
    _run_script(
        db,
        """
        -- The people in view when the counter last saved, so that a restart goes on with them
        -- instead of counting them again: one row, a JSON stage_data.LiveSnapshot.
        CREATE TABLE live_tracks (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            saved_ts   REAL NOT NULL,
            snapshot   TEXT NOT NULL
        );
        """,
    )


MIGRATIONS: Sequence[Migration] = (_v1_initial, _v2_live_tracks)
"""MIGRATIONS[i] takes a database from version i to i + 1. Append; never edit a released one."""


def schema_version(db: sqlite3.Connection) -> int:
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
    if exists.fetchone() is None:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to the newest version, one transaction per step; returns the version."""
    with _transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = schema_version(db)
    if version > len(migrations):
        raise StoreError(
            f"the database has schema version {version}, newer than this program knows "
            f"({len(migrations)}): it was written by a newer people-counter"
        )
    for target in range(version + 1, len(migrations) + 1):
        with _transaction(db):
            migrations[target - 1](db)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        log.info("database migrated to schema version %d", target)
    return len(migrations)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock at once, so a concurrent `people-counter reset` waits on
    # busy_timeout instead of failing half-way.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (a full disk) may have rolled back already, or left the transaction open.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    """A read-write connection in autocommit mode (transactions are explicit), WAL, NORMAL sync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # SQLite gives the -wal and -shm files the database's mode, so this covers them too.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, DB_MODE))
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            # A full disk at start: go on in the file's journal mode; the writes wait in memory.
            mode = f"unchanged: {error}"
        if mode != "wal":
            # Still correct, but each commit then waits for an fsync: record() gets slower.
            log.warning("%s: could not switch to WAL (journal mode %s); commits will be slower", path, mode)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: cannot open the database: {error}") from None
    return db


def _close_writer(db: sqlite3.Connection) -> None:
    """Close a read-write connection and leave the file readable by a read-only user.

    A WAL database can be read with `mode=ro` only while its -shm file exists. The last writer
    to close deletes it, and the dashboard's user, who may not create files in the state
    directory, could then not open the database at all. So the last writer switches the file
    back to a rollback journal, which needs no -shm; the next writer turns WAL on again. With
    other connections open the switch is refused at once (busy_timeout 0), and then the -shm
    file stays because they still use it.
    """
    try:
        db.execute("PRAGMA busy_timeout=0")
        db.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:
        pass
    finally:
        db.close()


def _open_migrated(state_dir: Path) -> sqlite3.Connection:
    path = database_path(state_dir)
    db = _connect(path)
    try:
        migrate(db)
        _ensure_period(db, time.time())
    except sqlite3.DatabaseError as error:
        db.close()
        raise StoreError(f"{path}: {error}") from None
    except BaseException:
        db.close()
        raise
    return db


def _current_period(db: sqlite3.Connection) -> int | None:
    row = db.execute("SELECT MAX(id) FROM resets").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _new_period(db: sqlite3.Connection, ts: float, reason: str) -> int:
    """With a transaction open: a reset row and its zero totals; the track ids carry on."""
    cursor = db.execute("INSERT INTO resets (ts, reason) VALUES (?, ?)", (ts, reason))
    period = int(cast(int, cursor.lastrowid))
    db.execute(
        "INSERT INTO totals (period_id, last_track_id, updated_ts)"
        " VALUES (?, (SELECT COALESCE(MAX(last_track_id), 0) FROM totals), ?)",
        (period, ts),
    )
    return period


def _ensure_period(db: sqlite3.Connection, ts: float) -> None:
    if _current_period(db) is None:
        with _transaction(db):
            if _current_period(db) is None:
                _new_period(db, ts, "first start")


def request_reset(state_dir: Path, reason: str = "command") -> None:
    """Start a new count period (totals from zero, history kept); a running counter follows.

    Works whether or not the counter runs: it opens its own connection, and the counter sees the
    new period through CountStore.reset_requested().
    """
    db = _open_migrated(state_dir)
    try:
        with _transaction(db):
            _new_period(db, time.time(), reason)
    finally:
        _close_writer(db)


# -- reading (shared by the counter's store and the dashboard) ---------------------------------


class HistoryBucket(NamedTuple):
    """Aggregates of one time bucket for the charts (a tuple, so rows unpack and serialise plainly)."""

    start_ts: float
    avg_count: float
    """The mean of people in view over the frames of the bucket."""
    entries: int
    exits: int
    max_count: int
    in_count: int
    out_count: int


class CountReader:
    """Read-only queries: what the dashboard shows."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open_readonly(cls, path: Path) -> CountReader:
        """Open the database without write access (the dashboard's user only reads it)."""
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.Error as error:
            raise StoreError(f"{path}: cannot open the database read-only: {error}") from None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def history(self, since_ts: float, until_ts: float, bucket_s: int = 60) -> list[HistoryBucket]:
        """Buckets of bucket_s seconds (rounded to whole minutes) from since_ts to until_ts."""
        bucket = max(60, int(bucket_s) // 60 * 60)
        rows = self._db.execute(
            """
            SELECT (minute_ts / :bucket) * :bucket AS start,
                   -- minutes that only record() touched have no samples: their maximum is
                   -- the best figure there is
                   CASE WHEN SUM(samples) > 0 THEN CAST(SUM(count_sum) AS REAL) / SUM(samples)
                        ELSE MAX(count_max) END,
                   SUM(entries), SUM(exits), MAX(count_max), SUM(in_count), SUM(out_count)
            FROM minutes
            WHERE minute_ts >= :since AND minute_ts < :until
            GROUP BY start ORDER BY start
            """,
            {"bucket": bucket, "since": int(since_ts // 60 * 60), "until": until_ts},
        )
        return [HistoryBucket(float(r[0]), round(float(r[1]), 2), *map(int, r[2:])) for r in rows]

    def recent_alerts(self, limit: int = 50) -> list[Alert]:
        rows = self._db.execute(
            "SELECT type, value, threshold, ts, track_id FROM alerts ORDER BY ts DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [Alert(cast(Literal["occupancy", "loitering"], r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def open_readonly(path: Path) -> CountReader:
    return CountReader.open_readonly(path)


# One-shot helpers for a web handler: open read-only, query, close. A database that does not
# exist yet (the counter never ran) has no history: an empty answer, not an error.


def history(path: Path, since_ts: float, until_ts: float | None = None, bucket_s: int = 60) -> list[HistoryBucket]:
    if not path.exists():
        return []
    reader = CountReader.open_readonly(path)
    try:
        return reader.history(since_ts, time.time() + 60 if until_ts is None else until_ts, bucket_s)
    finally:
        reader.close()


def recent_alerts(path: Path, limit: int = 20) -> list[dict[str, object]]:
    """Newest first, shaped like the MQTT `alert` payload: {type, value, threshold, ts}."""
    if not path.exists():
        return []
    reader = CountReader.open_readonly(path)
    try:
        alerts = reader.recent_alerts(limit)
    finally:
        reader.close()
    return [{"type": a.type, "value": a.value, "threshold": a.threshold, "ts": a.ts} for a in alerts]


# -- writing (the counter) ----------------------------------------------------------------------


@dataclass(slots=True)
class _MinuteDelta:
    """What this process added to one minute since the last flush (merged into the row)."""

    samples: int = 0
    count_sum: int = 0
    count_max: int = 0
    entries: int = 0
    exits: int = 0
    in_count: int = 0
    out_count: int = 0


class _Checkpointer:
    """Checkpoints the WAL from its own thread and connection, so no fsync lands in record()."""

    def __init__(self, path: Path, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._path = path
        self._every_s = every_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as error:
            log.warning("no background checkpoints: %s", error)
            return
        try:
            while not self._stopping.wait(self._every_s):
                self.checkpoint(db)
        finally:
            db.close()

    @staticmethod
    def checkpoint(db: sqlite3.Connection) -> None:
        # PASSIVE never waits for readers or the writer; what it cannot copy now, it copies next time.
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:
            log.debug("checkpoint skipped: %s", error)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5.0)


def _minute(ts: float) -> int:
    return int(ts // 60) * 60


@dataclass(frozen=True, slots=True)
class _PendingRecord:
    """A record() not yet written: its result, and the totals and last track id after it."""

    result: CountingResult
    totals: Totals
    last_track_id: int
    ts: float
    period: int
    """Negative: the period that a _PendingReset before it opens (its id is known once written)."""


@dataclass(frozen=True, slots=True)
class _PendingReset:
    ts: float
    reason: str
    period: int
    """The negative stand-in for the new period's id until it is written."""


class CountStore(CountReader):
    """The counter's read-write store. One instance per running counter, used from one thread."""

    def __init__(self, state_dir: Path, retention_days: int = 30, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = database_path(state_dir)
        self.retention_days = retention_days
        super().__init__(_open_migrated(state_dir))
        self._period = cast(int, _current_period(self._db))
        self._minutes: dict[int, _MinuteDelta] = {}
        self._pending: list[_PendingRecord | _PendingReset] = []
        """What has not been written yet, in order: nothing but during a failure of the disk."""
        self._pending_live: LiveSnapshot | None = None
        self._clock = clock
        self._failing_since: float | None = None
        self._next_try = float("-inf")
        self._next_complaint = float("-inf")
        self._open_minute: int | None = None
        self._last_prune = float("-inf")
        # The background checkpoints keep the WAL short, so SQLite's own checkpoint (inside a
        # commit) stays a safety net for a writer that never pauses long enough for them.
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        self._checkpointer = _Checkpointer(self.path)
        self.prune(time.time())

    @property
    def period_id(self) -> int:
        return self._period

    @property
    def status(self) -> Literal["ok", "degraded"]:
        """ "degraded" while writes fail: what was counted since waits in memory."""
        return "ok" if self._failing_since is None else "degraded"

    def load(self) -> tuple[Totals, int]:
        """The totals of the current count period, and the last track id ever used."""
        row = self._db.execute(
            "SELECT total, in_count, out_count, dwell_sum_s, dwell_count FROM totals WHERE period_id = ?",
            (self._period,),
        ).fetchone()
        last_id = self._db.execute("SELECT COALESCE(MAX(last_track_id), 0) FROM totals").fetchone()[0]
        return (Totals(*row) if row else Totals()), int(last_id)

    # -- per-frame and per-result writes ---------------------------------------------------------

    def note_count(self, count: int, ts: float) -> None:
        """One frame's people in view, kept in memory; a finished minute is written once."""
        minute = _minute(ts)
        delta = self._minutes.get(minute)
        if delta is None:
            delta = self._minutes[minute] = _MinuteDelta()
        delta.samples += 1
        delta.count_sum += count
        delta.count_max = max(delta.count_max, count)
        if self._open_minute is not None and minute > self._open_minute:
            # The previous minute is complete: write it now so the charts never wait for record().
            self.flush(ts)
        self._open_minute = minute

    def record(
        self,
        totals: Totals,
        result: CountingResult,
        count: int,
        ts: float,
        last_track_id: int,
        live: LiveSnapshot | None = None,
    ) -> None:
        """Append the frame's events, crossings and alerts and update the totals: one commit.

        `live`, the people in view after this frame, is saved in the same commit: a person counted
        here is, after a crash, either counted and carried on, or neither.

        `count` only raises the minute's maximum: the frame's sample for the mean comes from
        note_count(), which the caller makes on every frame.
        """
        delta = self._minutes.setdefault(_minute(ts), _MinuteDelta())
        delta.count_max = max(delta.count_max, count)
        for event in result.events:
            if event.type == "enter":
                delta.entries += 1
            else:
                delta.exits += 1
        for crossing in result.crossings:
            if crossing.direction == "in":
                delta.in_count += 1
            else:
                delta.out_count += 1
        # A copy: the caller goes on updating its totals in place.
        self._pending.append(_PendingRecord(result, dataclasses.replace(totals), last_track_id, ts, self._period))
        if live is not None:
            self._pending_live = live
        self._write_pending()

    def save_live(self, live: LiveSnapshot) -> None:
        """Save the people in view (about once a second, and at a stop)."""
        self._pending_live = live
        self._write_pending()

    def _write_pending(self, now_or_never: bool = False) -> bool:
        """Write everything held in memory in one transaction; True if nothing is left.

        Degraded, it tries only every RETRY_EVERY_S (or when `now_or_never`, at the close)."""
        now = self._clock()
        if self._failing_since is not None and now < self._next_try and not now_or_never:
            return False
        if not (self._pending or self._minutes or self._pending_live):
            return True
        try:
            with _transaction(self._db):
                periods = self._write_backlog()
                self._write_minutes()
                if self._pending_live is not None:
                    self._write_live(self._pending_live)
        except sqlite3.OperationalError as error:
            self._write_failed(error, now)
            return False
        written = len(self._pending)
        self._period = periods.get(self._period, self._period)
        self._pending.clear()
        self._minutes.clear()
        self._pending_live = None
        if self._failing_since is not None:
            log.warning(
                "store %s: writing again after %.0f s; the %d records held in memory are written",
                self.path,
                now - self._failing_since,
                written,
            )
            self._failing_since = None
        return True

    def _write_failed(self, error: sqlite3.OperationalError, now: float) -> None:
        if self._failing_since is None:
            self._failing_since = now
        self._next_try = now + RETRY_EVERY_S
        if now >= self._next_complaint:
            self._next_complaint = now + COMPLAIN_EVERY_S
            log.error(
                "store %s cannot write (%s): counting goes on in memory (%d records so far), retrying every %.0f s",
                self.path,
                error,
                len(self._pending),
                RETRY_EVERY_S,
            )

    def _write_backlog(self) -> dict[int, int]:
        """With a transaction open: the pending resets and records, in order. Returns the ids the
        new periods got, by their stand-ins."""
        periods: dict[int, int] = {}
        for item in self._pending:
            if isinstance(item, _PendingReset):
                periods[item.period] = _new_period(self._db, item.ts, item.reason)
                continue
            period = periods.get(item.period, item.period)
            self._write_result(item.result, period)
            totals = item.totals
            self._db.execute(
                "UPDATE totals SET total = ?, in_count = ?, out_count = ?, dwell_sum_s = ?,"
                " dwell_count = ?, last_track_id = MAX(last_track_id, ?), updated_ts = ? WHERE period_id = ?",
                (
                    totals.total,
                    totals.in_count,
                    totals.out_count,
                    totals.dwell_sum_s,
                    totals.dwell_count,
                    item.last_track_id,
                    item.ts,
                    period,
                ),
            )
        return periods

    def _write_live(self, live: LiveSnapshot) -> None:
        self._db.execute(
            "INSERT INTO live_tracks (id, saved_ts, snapshot) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET saved_ts = excluded.saved_ts, snapshot = excluded.snapshot",
            (time.time(), _live_to_json(live)),
        )

    def load_live(self) -> LiveSnapshot | None:
        """The people in view at the last save, or None (never saved, or unreadable: logged)."""
        row = self._db.execute("SELECT snapshot FROM live_tracks WHERE id = 1").fetchone()
        if row is None:
            return None
        try:
            return _live_from_json(row[0])
        except (ValueError, TypeError, KeyError) as error:
            log.warning("the saved people in view are unreadable, starting without them: %s", error)
            return None

    def _write_result(self, result: CountingResult, period: int) -> None:
        self._db.executemany(
            "INSERT INTO events (ts, type, track_id, duration_s, period_id) VALUES (?, ?, ?, ?, ?)",
            [(e.ts, e.type, e.track_id, e.duration_s, period) for e in result.events],
        )
        self._db.executemany(
            "INSERT INTO crossings (ts, track_id, direction, period_id) VALUES (?, ?, ?, ?)",
            [(c.ts, c.track_id, c.direction, period) for c in result.crossings],
        )
        self._db.executemany(
            "INSERT INTO alerts (ts, type, value, threshold, track_id, period_id) VALUES (?, ?, ?, ?, ?, ?)",
            [(a.ts, a.type, a.value, a.threshold, a.track_id, period) for a in result.alerts],
        )

    def _write_minutes(self) -> None:
        """With a transaction open: merge the in-memory deltas into their rows (the caller forgets
        them once the transaction is committed)."""
        if not self._minutes:
            return
        self._db.executemany(
            """
            INSERT INTO minutes (minute_ts, samples, count_sum, count_max, entries, exits, in_count, out_count)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (minute_ts) DO UPDATE SET
                samples = samples + excluded.samples,
                count_sum = count_sum + excluded.count_sum,
                count_max = MAX(count_max, excluded.count_max),
                entries = entries + excluded.entries,
                exits = exits + excluded.exits,
                in_count = in_count + excluded.in_count,
                out_count = out_count + excluded.out_count
            """,
            [
                (m, d.samples, d.count_sum, d.count_max, d.entries, d.exits, d.in_count, d.out_count)
                for m, d in self._minutes.items()
            ],
        )

    def flush(self, ts: float) -> None:
        """Write what is held in memory (or retry, degraded); prune when it is due (hourly)."""
        if self._write_pending() and ts - self._last_prune >= PRUNE_EVERY_S:
            try:
                self.prune(ts)
            except sqlite3.OperationalError as error:
                self._write_failed(error, self._clock())

    def prune(self, now: float) -> int:
        """Delete events, crossings, alerts and minutes older than the retention; the row count."""
        self._last_prune = now
        cutoff = now - self.retention_days * 86400.0
        removed = 0
        with _transaction(self._db):
            for table, column in (("events", "ts"), ("crossings", "ts"), ("alerts", "ts"), ("minutes", "minute_ts")):
                removed += self._db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,)).rowcount
        if removed:
            log.debug("pruned %d rows older than %d days", removed, self.retention_days)
        return removed

    # -- count periods ----------------------------------------------------------------------------

    def reset(self, ts: float, reason: str = "daily") -> None:
        """Start a new count period now (the daily reset); the caller zeroes its own totals."""
        stand_in = min([0, *(item.period for item in self._pending)]) - 1
        self._pending.append(_PendingReset(ts, reason, stand_in))
        self._period = stand_in
        self._write_pending()

    def reset_requested(self) -> bool:
        """True once after another process (`people-counter reset`) started a new count period.

        A primary-key lookup: cheap enough to call about once a second from the counting loop.
        The caller then zeroes its totals; record() already writes to the new period. While a reset
        of its own waits to be written (a full disk), or the disk cannot be read, it says False.
        """
        if self._period < 0:
            return False
        try:
            newest = _current_period(self._db)
        except sqlite3.OperationalError:
            return False
        if newest is None or newest == self._period:
            return False
        self._period = newest
        return True

    def close(self) -> None:
        """Write what is held in memory and close; the WAL is merged into the file."""
        self._checkpointer.stop()
        try:
            if not self._write_pending(now_or_never=True):
                log.error(
                    "store %s: %d records counted could not be written and are lost", self.path, len(self._pending)
                )
        finally:
            _close_writer(self._db)


def saved_media_position(state_dir: Path) -> float | None:
    """Where in a recorded file the last run saved the people in view (seconds from the file's
    start), read without opening the store for writing; None when there is none."""
    path = database_path(state_dir)
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            row = db.execute("SELECT snapshot FROM live_tracks WHERE id = 1").fetchone()
        finally:
            db.close()
        media_ts = None if row is None else json.loads(row[0])["media_ts"]
    except (sqlite3.Error, ValueError, KeyError, TypeError):
        return None  # an older schema, or nothing saved: start from the beginning
    return None if media_ts is None else float(media_ts)


def _fields(item: object) -> dict[str, object]:
    """A dataclass's fields, one level deep: dataclasses.asdict deep-copies every descriptor (10 ms a save)."""
    return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}  # type: ignore[arg-type]


def _live_to_json(live: LiveSnapshot) -> str:
    data = _fields(live)
    data["tracks"] = [_fields(track) for track in live.tracks]
    data["line_sides"] = [_fields(side) for side in live.line_sides]
    return json.dumps(data, separators=(",", ":"))


def _with_tuples(data: dict[str, object]) -> dict[str, object]:
    """JSON arrays back to the tuples the snapshots hold."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}


def _live_from_json(text: str) -> LiveSnapshot:
    data = json.loads(text)
    return LiveSnapshot(
        clock_ts=float(data["clock_ts"]),
        media_ts=None if data["media_ts"] is None else float(data["media_ts"]),
        tracks=tuple(TrackSnapshot(**_with_tuples(track)) for track in data["tracks"]),  # type: ignore[arg-type]
        line_sides=tuple(LineSideSnapshot(**_with_tuples(side)) for side in data["line_sides"]),  # type: ignore[arg-type]
        loitering_alerted=tuple(int(track_id) for track_id in data["loitering_alerted"]),
    )
