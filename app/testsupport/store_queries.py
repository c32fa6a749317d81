"""What the tests read back from a counter's SQLite store, beyond what the product itself queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal, cast

from people_counter.stage_data import PersonEvent, Totals


def _read(database: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute(query, params).fetchall()
    finally:
        db.close()


def stored_totals(database: Path) -> Totals:
    """The totals of the current count (since the last reset)."""
    rows = _read(
        database,
        "SELECT total, in_count, out_count, dwell_sum_s, dwell_count FROM totals"
        " WHERE period_id = (SELECT MAX(id) FROM resets)",
    )
    return Totals(*rows[0]) if rows else Totals()  # type: ignore[arg-type]


def stored_events(database: Path, limit: int = 1000) -> list[PersonEvent]:
    """The newest events first, across resets."""
    rows = _read(database, "SELECT type, track_id, ts, duration_s FROM events ORDER BY ts DESC, id DESC LIMIT ?", limit)
    return [PersonEvent(cast(Literal["enter", "exit"], r[0]), *r[1:]) for r in rows]  # type: ignore[arg-type]
