"""History for the charts and the CSV export, read from the counter's SQLite (read-only).

The counter writes per-minute aggregates; the dashboard only reads them through the
store's read-only reader (`mode=ro`), so it can never change a count. Queries run in a
worker thread, off the event loop that feeds the video.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from people_counter.outputs import store

# range name -> (span in seconds, bucket in seconds): about 60-170 points a chart.
RANGES: dict[str, tuple[int, int]] = {
    "hour": (3600, 60),
    "day": (86400, 600),
    "week": (7 * 86400, 3600),
}


class HistoryUnavailable(Exception):
    """The database is not there yet (the counter has not run)."""


def _reader(path: Path) -> store.CountReader:
    if not path.exists():
        raise HistoryUnavailable(f"{path} does not exist yet: the counter has not run")
    return store.open_readonly(path)


def read_buckets(path: Path, since_ts: float, until_ts: float, bucket_s: int) -> list[store.HistoryBucket]:
    reader = _reader(path)
    try:
        return reader.history(since_ts, until_ts, bucket_s)
    finally:
        reader.close()


def read_recent_alerts(path: Path, limit: int) -> list[dict[str, Any]]:
    reader = _reader(path)
    try:
        return [asdict(alert) for alert in reader.recent_alerts(limit)]
    finally:
        reader.close()


def filled(buckets: list[store.HistoryBucket], start: int, span_s: int, bucket_s: int) -> list[dict[str, Any]]:
    """Every bucket of the range, empty ones too (None), so the time axis is honest.

    people: mean people in view over the bucket; people_max: its peak;
    entries: entries per minute (the bucket's entries over its minutes).
    """
    by_start = {int(b.start_ts): b for b in buckets}
    per_minute = bucket_s / 60
    out: list[dict[str, Any]] = []
    for ts in range(start, start + span_s, bucket_s):
        b = by_start.get(ts)
        if b is None:
            out.append({"ts": ts, "people": None, "people_max": None, "entries": None, "exits": None})
        else:
            out.append(
                {
                    "ts": ts,
                    "people": b.avg_count,
                    "people_max": b.max_count,
                    "entries": round(b.entries / per_minute, 2),
                    "exits": round(b.exits / per_minute, 2),
                }
            )
    return out


async def history(path: Path, range_name: str) -> dict[str, Any]:
    span_s, bucket_s = RANGES[range_name]
    end = int(time.time() // bucket_s + 1) * bucket_s
    start = end - span_s
    try:
        buckets = await asyncio.to_thread(read_buckets, path, start, end, bucket_s)
        error = ""
    except (HistoryUnavailable, store.StoreError, sqlite3.Error) as exc:
        buckets, error = [], str(exc)
    return {
        "range": range_name,
        "bucket_s": bucket_s,
        "points": filled(buckets, start, span_s, bucket_s),
        "error": error,
    }


async def history_csv(path: Path, range_name: str) -> str:
    """One row a minute over the range, for a spreadsheet."""
    span_s, _ = RANGES[range_name]
    now = time.time()
    try:
        rows = await asyncio.to_thread(read_buckets, path, now - span_s, now + 60, 60)
    except (HistoryUnavailable, store.StoreError, sqlite3.Error):
        rows = []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["minute_utc", "people_in_view_avg", "people_in_view_max", "entries", "exits", "in", "out"])
    for b in rows:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b.start_ts))
        writer.writerow([iso, f"{b.avg_count:g}", b.max_count, b.entries, b.exits, b.in_count, b.out_count])
    return out.getvalue()


async def recent_alerts(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    try:
        return await asyncio.to_thread(read_recent_alerts, path, limit)
    except (HistoryUnavailable, store.StoreError, sqlite3.Error):
        return []
