"""A full disk under a counting store: counting goes on in memory, and nothing is lost.

The state directory is a small tmpfs, mounted in a mount namespace of a child process of its own
(`unshare -m`, which needs root, as CI runs), and filled with a file while the store writes. The
same counts made with no fault must leave the same database behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare to mount a small tmpfs"
)

CHILD = r"""
import json, logging, sqlite3, sys
from pathlib import Path
from people_counter.outputs.store import CountStore
from people_counter.stage_data import Alert, CountingResult, LineCrossing, LiveSnapshot, PersonEvent, Totals

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
state, fault = Path(sys.argv[1]), sys.argv[2]
T0 = 1_800_000_000.0


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


clock = Clock()
store = CountStore(state, clock=clock)
totals = Totals()
filler = state / "filler"
seen = {"degraded": False}


def fill_the_disk():
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass


def count(i):
    ts = T0 + i
    clock.now += 0.1
    enter_, leave = PersonEvent("enter", i, ts), PersonEvent("exit", i - 1, ts, 2.5)
    crossing = LineCrossing(i, "in" if i % 3 else "out", ts)
    alerts = (Alert("occupancy", 11.0, 10.0, ts),) if i % 50 == 0 else ()
    totals.total += 1
    totals.dwell_sum_s += 2.5
    totals.dwell_count += 1
    if crossing.direction == "in":
        totals.in_count += 1
    else:
        totals.out_count += 1
    store.note_count(i % 4, ts)
    store.record(totals, CountingResult((enter_, leave), (crossing,), alerts), i % 4, ts, i, LiveSnapshot(ts, None, ()))
    store.flush(ts)


for i in range(1, 301):
    if i == 20 and fault == "full":
        fill_the_disk()
    if i == 150:
        store.reset(T0 + i)  # a daily reset while the disk is full
        totals.total = totals.in_count = totals.out_count = totals.dwell_count = 0
        totals.dwell_sum_s = 0.0
    count(i)
    seen["degraded"] |= store.status == "degraded"
    if i == 200 and fault == "full":
        assert store.status == "degraded", "the disk never filled up"
        filler.unlink()
        clock.now += 10.0  # past the retry
store.close()

db = sqlite3.connect(state / "counts.sqlite3")
dump = {
    "degraded": seen["degraded"],
    # The first period starts at the real time of the first start.
    "resets": db.execute("SELECT id, iif(id = 1, 0, ts), reason FROM resets ORDER BY id").fetchall(),
    "totals": db.execute(
        "SELECT period_id, total, in_count, out_count, dwell_sum_s, dwell_count, last_track_id, updated_ts"
        " FROM totals ORDER BY period_id"
    ).fetchall(),
    "events": db.execute("SELECT id, ts, type, track_id, duration_s, period_id FROM events ORDER BY id").fetchall(),
    "crossings": db.execute("SELECT * FROM crossings ORDER BY id").fetchall(),
    "alerts": db.execute("SELECT * FROM alerts ORDER BY id").fetchall(),
    "minutes": db.execute("SELECT * FROM minutes ORDER BY minute_ts").fetchall(),
    "live_clock_ts": json.loads(db.execute("SELECT snapshot FROM live_tracks").fetchone()[0])["clock_ts"],
}
print(json.dumps(dump))
"""


def in_a_small_tmpfs(state: Path, script: str, *args: str) -> tuple[str, str]:
    """Run `script` with `state` (a new directory) as a 32 MB tmpfs; its stdout and stderr."""
    state.mkdir()
    mount = f"mount -t tmpfs -o size=32m,mode=0755 tmpfs {state}"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f'{mount} && exec "$0" -c "$@"', sys.executable, script, str(state), *args],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def run_counts(tmp_path: Path, fault: str) -> tuple[dict[str, object], str]:
    out, log = in_a_small_tmpfs(tmp_path / fault, CHILD, fault)
    return json.loads(out), log


def test_a_full_disk_loses_nothing_and_says_so_in_two_lines(tmp_path: Path) -> None:
    clean, clean_log = run_counts(tmp_path, "none")
    faulty, faulty_log = run_counts(tmp_path, "full")
    assert faulty.pop("degraded") and not clean.pop("degraded")
    assert faulty == clean
    assert len(clean["events"]) == 600 and len(clean["resets"]) == 2  # type: ignore[arg-type]
    assert "Traceback" not in faulty_log
    assert [line.split(" ", 1)[0] for line in faulty_log.splitlines()] == ["ERROR", "WARNING"], faulty_log
    assert "cannot write" in faulty_log and "writing again" in faulty_log
    assert clean_log == ""


FULL_AT_START = r"""
import logging, sys
from pathlib import Path
from people_counter.outputs.store import CountStore
from people_counter.stage_data import CountingResult, PersonEvent, Totals

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
state = Path(sys.argv[1])
CountStore(state).close()  # the database of an earlier run
with (state / "filler").open("wb", buffering=0) as out:
    try:
        while True:
            out.write(b"\0" * 65536)
    except OSError:
        pass
now = [0.0]
store = CountStore(state, clock=lambda: now[0])
store.record(Totals(total=1), CountingResult((PersonEvent("enter", 1, 1.0),)), 1, 1.0, 1)
print(store.status)
(state / "filler").unlink()
now[0] = 10.0
store.flush(2.0)
print(store.status, store.load()[0].total)
store.close()
"""


def test_a_disk_full_at_start_opens_the_store_degraded_and_writes_once_freed(tmp_path: Path) -> None:
    out, log = in_a_small_tmpfs(tmp_path / "state", FULL_AT_START)
    assert out.splitlines() == ["degraded", "ok 1"], log
    assert "Traceback" not in log and "cannot write" in log
