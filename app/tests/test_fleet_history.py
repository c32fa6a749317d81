"""The fleet's history in SQLite (fleet/history_store.py): minutes per device, the fleet's sums, the CSV."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from people_counter.fleet.history_store import SCHEMA_VERSION, HistoryStore
from people_counter.outputs.store import StoreError

T0 = 1_800_000_000 - 1_800_000_000 % 3600  # a whole hour, so buckets line up


def state(ts: float, count: int, crossed_in: int = 0, crossed_out: int = 0) -> dict[str, object]:
    return {"count": count, "total": 0, "in": crossed_in, "out": crossed_out, "ts": ts}


def rows(store: HistoryStore, device: str | None) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(store.csv_text(device, T0, T0 + 3600))))


def test_minutes_per_device_and_the_fleets_sums(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "fleet.sqlite3", retention_days=30, clock=lambda: T0 + 600)
    store.add_state("a", state(T0 + 5, 2))
    store.add_state("a", state(T0 + 35, 4))
    store.add_state("b", state(T0 + 10, 3))
    store.add_event("a", {"type": "enter", "track_id": 1, "ts": T0 + 20, "duration_s": None})
    store.add_event("a", {"type": "exit", "track_id": 1, "ts": T0 + 70, "duration_s": 50.0})
    store.add_event("b", {"type": "enter", "track_id": 9, "ts": T0 + 30, "duration_s": None})
    store.flush()
    # A second batch for the same minute adds to the row already written.
    store.add_state("a", state(T0 + 50, 6))
    store.flush()

    a = rows(store, "a")
    assert [(r["device"], r["people_in_view_avg"], r["people_in_view_max"], r["entries"], r["exits"]) for r in a] == [
        ("a", "4.00", "6", "1", "0"),
        ("a", "", "0", "0", "1"),
    ]
    assert a[1]["avg_visit_s"] == "50.0"
    fleet = rows(store, None)
    assert fleet[0]["device"] == "all"
    assert (fleet[0]["people_in_view_avg"], fleet[0]["people_in_view_max"], fleet[0]["entries"]) == ("7.00", "9", "2")

    buckets = store.buckets(None, T0, T0 + 3600, 600)
    assert len(buckets) == 1 and buckets[0].start_ts == T0
    assert buckets[0].entries == 2 and buckets[0].exits == 1 and buckets[0].max_count == 9
    assert store.buckets("b", T0, T0 + 3600, 60)[0].avg_count == 3.0
    assert store.has_device("b") and not store.has_device("c")
    store.close()


def test_crossings_from_the_change_of_in_and_out_survive_a_restart_and_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite3"
    store = HistoryStore(path, retention_days=30)
    store.add_state("a", state(T0 + 1, 0, crossed_in=40, crossed_out=30))  # the first state is the baseline
    store.add_state("a", state(T0 + 2, 0, crossed_in=43, crossed_out=31))
    store.flush()
    store.close()

    store = HistoryStore(path, retention_days=30)  # the page restarted
    store.add_state("a", state(T0 + 61, 0, crossed_in=45, crossed_out=31))
    store.add_state("a", state(T0 + 62, 0, crossed_in=1, crossed_out=0))  # the device's counts were reset
    store.flush()
    assert [(r["in"], r["out"]) for r in rows(store, "a")] == [("3", "1"), ("3", "0")]
    store.close()


def test_rows_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    now = [float(T0 + 10 * 86400)]
    store = HistoryStore(tmp_path / "fleet.sqlite3", retention_days=7, clock=lambda: now[0])
    store.add_state("a", state(T0, 1))  # 10 days old
    store.add_state("a", state(T0 + 5 * 86400, 1))  # 5 days old
    store.flush()
    db = sqlite3.connect(tmp_path / "fleet.sqlite3")
    assert [m for (m,) in db.execute("SELECT minute FROM minutes")] == [T0 + 5 * 86400]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    store.close()


def test_a_state_or_event_without_a_usable_ts_is_skipped(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "fleet.sqlite3", retention_days=7)
    store.add_state("a", {"count": 1, "ts": "yesterday"})
    store.add_event("a", {"type": "enter", "ts": None})
    store.add_event("a", {"type": "wave", "ts": T0})
    store.add_state("a", {"count": True, "ts": T0})
    store.flush()
    assert rows(store, "a") == []
    store.close()


def test_a_newer_schema_is_refused_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite3"
    HistoryStore(path, retention_days=7).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        HistoryStore(path, retention_days=7)
