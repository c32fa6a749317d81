"""Backup, restore and status of the counts database, on real SQLite files, with a writer running."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from people_counter.outputs.store import MIGRATIONS, CountStore, StoreError
from people_counter.outputs.store_backup import backup, restore, status
from people_counter.paths import database_path
from people_counter.stage_data import CountingResult, LineCrossing, PersonEvent, Totals

T0 = 1_800_000_000.0


def visit(track_id: int, ts: float) -> CountingResult:
    return CountingResult(
        events=(PersonEvent("enter", track_id, ts), PersonEvent("exit", track_id, ts + 4, 4.0)),
        crossings=(LineCrossing(track_id, "in", ts + 2),),
    )


def count_people(store: CountStore, people: range, totals: Totals | None = None) -> Totals:
    """Record a visit for each track id, adding to `totals` (new ones by default)."""
    totals = Totals() if totals is None else totals
    for track_id in people:
        totals.total += 1
        totals.in_count += 1
        totals.dwell_sum_s += 4.0
        totals.dwell_count += 1
        store.record(totals, visit(track_id, T0 + track_id), count=1, ts=T0 + track_id, last_track_id=track_id)
    return totals


def test_status_gives_the_current_period_s_figures(tmp_path: Path) -> None:
    store = CountStore(tmp_path, retention_days=30)
    count_people(store, range(1, 8))
    store.close()
    now = status(tmp_path)
    assert (now.total, now.in_count, now.out_count, now.visits) == (7, 7, 0, 7)
    assert now.schema_version == len(MIGRATIONS)
    assert now.last_event_ts == T0 + 7 + 4
    assert now.size_bytes == database_path(tmp_path).stat().st_size > 0


def test_a_backup_taken_while_the_counter_writes_is_consistent(tmp_path: Path) -> None:
    """The copy is one committed state: its totals row agrees with its events, whatever moment
    of the writer's run the backup landed in."""
    state = tmp_path / "state"
    started, failures = threading.Event(), []

    def counter() -> None:  # a writer of its own, as the running counter is
        try:
            store = CountStore(state, retention_days=30)
            totals = count_people(store, range(1, 11))
            started.set()
            count_people(store, range(11, 2001), totals)
            store.close()
        except Exception as error:  # reported by the test below
            failures.append(error)
            started.set()

    writing = threading.Thread(target=counter)
    writing.start()
    assert started.wait(30)
    copies = [backup(state, tmp_path / f"copy-{n}.sqlite3") for n in range(5)]
    writing.join()
    assert not failures, failures
    assert status(state).total == 2000
    for copy in copies:
        db = sqlite3.connect(copy)
        total = db.execute("SELECT total FROM totals ORDER BY period_id DESC LIMIT 1").fetchone()[0]
        exits = db.execute("SELECT COUNT(*) FROM events WHERE type = 'exit'").fetchone()[0]
        db.close()
        assert 10 <= total <= 2000
        assert exits == total, f"{copy}: totals say {total}, events {exits}"


def test_restore_brings_back_the_counts_and_the_counter_goes_on_from_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = CountStore(state, retention_days=30)
    saved = count_people(store, range(1, 13))
    store.close()
    copy = backup(state, tmp_path / "counts-backup.sqlite3")
    store = CountStore(state, retention_days=30)
    count_people(store, range(13, 20), store.load()[0])
    store.close()
    assert status(state).total == 19

    restored = restore(state, copy)
    assert (restored.total, restored.visits) == (saved.total, saved.dwell_count) == (12, 12)
    again = CountStore(state, retention_days=30)
    assert again.load() == (saved, 12)
    again.close()


def test_a_backup_never_overwrites_a_file(tmp_path: Path) -> None:
    CountStore(tmp_path / "state", retention_days=30).close()
    taken = tmp_path / "taken.sqlite3"
    taken.write_bytes(b"keep me")
    with pytest.raises(StoreError, match="exists already"):
        backup(tmp_path / "state", taken)
    assert taken.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not sqlite at all" * 100, "not a people-counter database"),
        (None, "no schema version"),
        (len(MIGRATIONS) + 1, "newer than this program knows"),
    ],
    ids=["garbage", "other-sqlite", "newer-schema"],
)
def test_restore_refuses_what_is_not_an_older_or_equal_backup(
    tmp_path: Path, content: bytes | int | None, message: str
) -> None:
    state = tmp_path / "state"
    store = CountStore(state, retention_days=30)
    count_people(store, range(1, 4))
    store.close()
    source = tmp_path / "source.sqlite3"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        db = sqlite3.connect(source)
        db.execute("CREATE TABLE other (x)")
        if isinstance(content, int):
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (?)", (content,))
        db.commit()
        db.close()
    with pytest.raises(StoreError, match=message):
        restore(state, source)
    assert status(state).total == 3, "a refused restore changed the database"


def test_the_commands_back_up_restore_and_tell_the_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from people_counter.cli import main

    state = tmp_path / "state"
    config = tmp_path / "config.yml"
    config.write_text(f"state_dir: {state}\ninput: {{source: /dev/null}}\n", encoding="utf-8")
    store = CountStore(state, retention_days=30)
    count_people(store, range(1, 6))
    store.close()

    assert main(["backup", "-c", str(config)]) == 0
    copy = Path(capsys.readouterr().out.strip())
    assert copy.parent == state / "backups" and copy.is_file()
    request_more = CountStore(state, retention_days=30)
    count_people(request_more, range(6, 9), request_more.load()[0])
    request_more.close()
    assert main(["status", "-c", str(config)]) == 0
    assert "total           8 (in 8, out 0, visits 8)" in capsys.readouterr().out
    assert main(["restore", "-c", str(config), str(copy)]) == 0
    assert "total 5, in 5, out 0" in capsys.readouterr().out
    assert main(["restore", "-c", str(config), str(config)]) == 5
    assert "not a people-counter database" in capsys.readouterr().err


def test_a_backup_is_one_self_contained_file(tmp_path: Path) -> None:
    """The live database is WAL; its copy is not, so opening the copy leaves no -wal or -shm."""
    store = CountStore(tmp_path / "state", retention_days=30)
    count_people(store, range(1, 3))
    copy = backup(tmp_path / "state", tmp_path / "copy.sqlite3")
    store.close()
    status_of_copy = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    assert status_of_copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    status_of_copy.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.sqlite3", "state"]
