"""The fleet's history in SQLite on the central host: one row per device and minute.

Built from the bridged messages: a state gives a sample of the people in view (its mean and peak
over the minute) and, from the change of its `in`/`out` since the device's previous state, the
line crossings; an `enter` or `exit` event counts an entry or an exit (an exit adds its visit).
Each goes to the minute of the device's own `ts`, so messages a bridge queued during an outage
land where they belong.

The page's loop adds to an in-memory batch (add_state, add_event); flush() writes the batch in one
transaction, adding to the rows already there, from a worker thread. WAL, so the charts read
while it writes. Rows older than `retention_days` are deleted once an hour.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from people_counter.outputs.store import HistoryBucket, StoreError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS minutes (
    device TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count_sum REAL NOT NULL DEFAULT 0,
    count_n INTEGER NOT NULL DEFAULT 0,
    count_max INTEGER NOT NULL DEFAULT 0,
    entries INTEGER NOT NULL DEFAULT 0,
    exits INTEGER NOT NULL DEFAULT 0,
    visit_sum_s REAL NOT NULL DEFAULT 0,
    crossed_in INTEGER NOT NULL DEFAULT 0,
    crossed_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, minute)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS minutes_by_minute ON minutes (minute);
CREATE TABLE IF NOT EXISTS crossings (
    device TEXT PRIMARY KEY,
    crossed_in INTEGER NOT NULL,
    crossed_out INTEGER NOT NULL
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO minutes
    (device, minute, count_sum, count_n, count_max, entries, exits, visit_sum_s, crossed_in, crossed_out)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device, minute) DO UPDATE SET
    count_sum = count_sum + excluded.count_sum,
    count_n = count_n + excluded.count_n,
    count_max = max(count_max, excluded.count_max),
    entries = entries + excluded.entries,
    exits = exits + excluded.exits,
    visit_sum_s = visit_sum_s + excluded.visit_sum_s,
    crossed_in = crossed_in + excluded.crossed_in,
    crossed_out = crossed_out + excluded.crossed_out
"""

# Per bucket: each minute's figures summed over the devices asked for, then the bucket's minutes
# combined (people in view: the mean of the minutes' sums; peak: the largest).
_BUCKETS = """
SELECT bucket, AVG(people), MAX(peak), SUM(entries), SUM(exits), SUM(crossed_in), SUM(crossed_out)
FROM (
    SELECT minute / :bucket * :bucket AS bucket,
           SUM(CASE WHEN count_n > 0 THEN count_sum / count_n END) AS people,
           SUM(count_max) AS peak, SUM(entries) AS entries, SUM(exits) AS exits,
           SUM(crossed_in) AS crossed_in, SUM(crossed_out) AS crossed_out
    FROM minutes
    WHERE minute >= :since AND minute < :until AND (:device IS NULL OR device = :device)
    GROUP BY minute
)
GROUP BY bucket ORDER BY bucket
"""

_CSV_ROWS = """
SELECT minute, SUM(CASE WHEN count_n > 0 THEN count_sum / count_n END), SUM(count_max), SUM(entries), SUM(exits),
       SUM(visit_sum_s), SUM(crossed_in), SUM(crossed_out)
FROM minutes
WHERE minute >= :since AND minute < :until AND (:device IS NULL OR device = :device)
GROUP BY minute ORDER BY minute
"""

CSV_HEADER = (
    "minute_utc",
    "device",
    "people_in_view_avg",
    "people_in_view_max",
    "entries",
    "exits",
    "avg_visit_s",
    "in",
    "out",
)

PRUNE_EVERY_S = 3600.0


@dataclass
class _Minute:
    """One device's minute, in the order of the table's columns after (device, minute)."""

    count_sum: float = 0.0
    count_n: int = 0
    count_max: int = 0
    entries: int = 0
    exits: int = 0
    visit_sum_s: float = 0.0
    crossed_in: int = 0
    crossed_out: int = 0


Batch = dict[tuple[str, int], _Minute]


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class HistoryStore:
    def __init__(self, path: Path, retention_days: int, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.retention_s = retention_days * 86400
        self.clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path}: schema version {version} is newer than this release's ({SCHEMA_VERSION})")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"{path}: cannot open the fleet history: {error}") from None
        self._write_lock = threading.Lock()
        self._batch: Batch = {}
        saved = self._db.execute("SELECT device, crossed_in, crossed_out FROM crossings")
        self._crossings: dict[str, tuple[int, int]] = {str(d): (int(i), int(o)) for d, i, o in saved}
        self._crossings_changed: set[str] = set()
        self._pruned_at = 0.0

    def close(self) -> None:
        with self._write_lock:
            self._db.close()

    # -- the loop's side: add to the batch ---------------------------------------------------------

    def _minute(self, device: str, ts: object) -> _Minute | None:
        seconds = _int(ts)
        if seconds is None:
            return None
        key = (device, seconds - seconds % 60)
        row = self._batch.get(key)
        if row is None:
            row = self._batch[key] = _Minute()
        return row

    def add_state(self, device: str, state: Mapping[str, Any]) -> None:
        count = _int(state.get("count"))
        row = None if count is None else self._minute(device, state.get("ts"))
        if row is None or count is None:
            return
        row.count_sum += count
        row.count_n += 1
        row.count_max = max(row.count_max, count)
        crossed_in, crossed_out = _int(state.get("in")), _int(state.get("out"))
        if crossed_in is None or crossed_out is None:
            return
        before = self._crossings.get(device)
        if before is not None:
            # A figure lower than before is a reset: it counts from 0.
            row.crossed_in += crossed_in - before[0] if crossed_in >= before[0] else crossed_in
            row.crossed_out += crossed_out - before[1] if crossed_out >= before[1] else crossed_out
        if before != (crossed_in, crossed_out):
            self._crossings[device] = (crossed_in, crossed_out)
            self._crossings_changed.add(device)

    def add_event(self, device: str, event: Mapping[str, Any]) -> None:
        row = self._minute(device, event.get("ts")) if event.get("type") in ("enter", "exit") else None
        if row is None:
            return
        if event.get("type") == "enter":
            row.entries += 1
        elif event.get("type") == "exit":
            row.exits += 1
            duration = event.get("duration_s")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                row.visit_sum_s += float(duration)

    def take_batch(self) -> tuple[Batch, dict[str, tuple[int, int]]]:
        batch, self._batch = self._batch, {}
        crossings = {device: self._crossings[device] for device in self._crossings_changed}
        self._crossings_changed = set()
        return batch, crossings

    # -- a worker thread's side: write, prune, read ------------------------------------------------

    def write(self, batch: Batch, crossings: dict[str, tuple[int, int]]) -> None:
        rows = [(device, minute, *astuple(m)) for (device, minute), m in batch.items()]
        with self._write_lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_UPSERT, rows)
                self._db.executemany(
                    "INSERT OR REPLACE INTO crossings (device, crossed_in, crossed_out) VALUES (?, ?, ?)",
                    [(device, i, o) for device, (i, o) in crossings.items()],
                )
                now = self.clock()
                if now - self._pruned_at >= PRUNE_EVERY_S:
                    self._db.execute("DELETE FROM minutes WHERE minute < ?", (int(now - self.retention_s),))
                    self._pruned_at = now
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def flush(self) -> None:
        """Write what the loop added so far (from the loop's thread: tests and the last flush)."""
        self.write(*self.take_batch())

    def _read(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return db.execute(query, params).fetchall()
        finally:
            db.close()

    def buckets(self, device: str | None, since: float, until: float, bucket_s: int) -> list[HistoryBucket]:
        """device None: the whole fleet."""
        params = {"bucket": bucket_s, "since": int(since), "until": int(until), "device": device}
        return [
            HistoryBucket(
                start_ts=float(b),
                avg_count=0.0 if people is None else round(people, 2),
                entries=e,
                exits=x,
                max_count=int(peak),
                in_count=i,
                out_count=o,
            )
            for b, people, peak, e, x, i, o in self._read(_BUCKETS, params)
        ]

    def csv_text(self, device: str | None, since: float, until: float) -> str:
        """One row a minute; device None: the fleet's sums, named `all`."""
        params = {"since": int(since), "until": int(until), "device": device}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for minute, people, peak, entries, exits, visit_s, crossed_in, crossed_out in self._read(_CSV_ROWS, params):
            iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(minute))
            people_text = "" if people is None else f"{people:.2f}"
            visit = f"{visit_s / exits:.1f}" if exits else ""
            writer.writerow([iso, device or "all", people_text, peak, entries, exits, visit, crossed_in, crossed_out])
        return out.getvalue()

    def has_device(self, device: str) -> bool:
        return bool(self._read("SELECT 1 FROM minutes WHERE device = :device LIMIT 1", {"device": device}))
