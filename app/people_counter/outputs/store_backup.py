"""An admin's view of the counts database: a consistent copy (SQLite's backup API, safe while the
counter writes), a restore from such a copy, and a short status.

`people-counter backup|restore|status` call these; a restore replaces the whole database and is
done with the counter stopped (the device's `people-counter` wrapper stops and starts it).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from people_counter.outputs.store import DB_MODE, MIGRATIONS, StoreError, schema_version
from people_counter.paths import database_path


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What `people-counter status` prints: the current count period's figures and the file's."""

    path: Path
    schema_version: int
    period_started_ts: float | None
    total: int
    in_count: int
    out_count: int
    visits: int
    last_event_ts: float | None
    size_bytes: int


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise StoreError(f"{path}: no such database")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: not a people-counter database: {error}") from None
    try:
        yield db
    finally:
        db.close()


def backup(state_dir: Path, dest: Path) -> Path:
    """Copy the database to `dest` (a new file), consistent even while the counter writes."""
    source = database_path(state_dir)
    if dest.exists():
        raise StoreError(f"{dest}: exists already; give a new file name")
    with _read_only(source) as db:
        _copy(db, dest)
    return dest


def restore(state_dir: Path, source: Path) -> StoreStatus:
    """Replace the database with a backup made by `backup` (checked first); the counter must be stopped."""
    with _read_only(source) as backup_db:
        version = _checked_version(backup_db, source)
        if version == 0:
            raise StoreError(f"{source}: not a people-counter database (no schema version)")
        target = database_path(state_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, DB_MODE))
        live = sqlite3.connect(target, timeout=5)
        try:
            backup_db.backup(live)
        except sqlite3.OperationalError as error:
            raise StoreError(f"{target}: cannot restore into it ({error}): is the counter stopped?") from None
        finally:
            live.close()
    return status(state_dir)


def status(state_dir: Path) -> StoreStatus:
    path = database_path(state_dir)
    with _read_only(path) as db:
        version = _checked_version(db, path)
        period = db.execute("SELECT id, ts FROM resets ORDER BY id DESC LIMIT 1").fetchone()
        period_id, started = (period[0], float(period[1])) if period else (None, None)
        totals = db.execute(
            "SELECT total, in_count, out_count, dwell_count FROM totals WHERE period_id = ?", (period_id,)
        ).fetchone()
        last_event = db.execute("SELECT MAX(ts) FROM events").fetchone()[0]
    total, in_count, out_count, visits = totals if totals else (0, 0, 0, 0)
    return StoreStatus(
        path=path,
        schema_version=version,
        period_started_ts=started,
        total=int(total),
        in_count=int(in_count),
        out_count=int(out_count),
        visits=int(visits),
        last_event_ts=None if last_event is None else float(last_event),
        size_bytes=path.stat().st_size,
    )


def _checked_version(db: sqlite3.Connection, path: Path) -> int:
    version = schema_version(db)
    if version > len(MIGRATIONS):
        raise StoreError(f"{path}: schema version {version} is newer than this program knows ({len(MIGRATIONS)})")
    return version


def _copy(db: sqlite3.Connection, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, DB_MODE))
    copy = sqlite3.connect(dest)
    try:
        db.backup(copy)
        # One self-contained file: the live database is WAL, and a copy left so would grow -wal
        # and -shm files beside it whenever it is opened.
        copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        copy.close()
