"""Journal priorities and the brake on repeated lines (logging_setup), time injected."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from people_counter.logging_setup import JournalFormatter, RepeatFilter, writes_to_journal


def _record(level: int, msg: str, *args: object, name: str = "people_counter.x") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<3>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
    ],
)
def test_each_level_gets_its_syslog_priority(level: int, prefix: str) -> None:
    line = JournalFormatter("%(levelname)s %(name)s: %(message)s").format(_record(level, "input %s dropped", "cam"))
    assert line == f"{prefix}{logging.getLevelName(level)} people_counter.x: input cam dropped"


def test_every_line_of_a_traceback_carries_the_priority() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = JournalFormatter("%(message)s").format(record).splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>ValueError: boom"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_error_passes_once_per_window_then_says_how_many_were_held() -> None:
    clock = FakeClock()
    brake = RepeatFilter(window_s=10.0, clock=clock)
    passed = []
    for second in range(25):
        clock.now = 1000.0 + second
        record = _record(logging.ERROR, "store write failed: %s", f"disk full {second}")
        if brake.filter(record):
            passed.append(record.getMessage())
    assert passed == [
        "store write failed: disk full 0",
        "store write failed: disk full 10 (9 more like this suppressed in the last 10 s)",
        "store write failed: disk full 20 (9 more like this suppressed in the last 10 s)",
    ]


def test_other_messages_and_info_lines_are_not_held() -> None:
    clock = FakeClock()
    brake = RepeatFilter(window_s=10.0, clock=clock)
    assert brake.filter(_record(logging.WARNING, "a %s", 1))
    assert brake.filter(_record(logging.WARNING, "b %s", 1))  # another template
    assert brake.filter(_record(logging.ERROR, "a %s", 1))  # another level
    assert brake.filter(_record(logging.WARNING, "a %s", 1, name="people_counter.y"))  # another logger
    assert all(brake.filter(_record(logging.INFO, "a %s", n)) for n in range(5))
    assert not brake.filter(_record(logging.WARNING, "a %s", 2))


def test_the_journal_is_recognised_by_the_stream_systemd_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "journal").open("w") as journal, (tmp_path / "other").open("w") as other:
        stat = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert writes_to_journal(journal)
        assert not writes_to_journal(other)  # a child that redirected its stderr keeps the variable
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not writes_to_journal(journal)


COMMAND = """
import os, sys
stat = os.fstat(2)
os.environ["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
from people_counter.command_runner import run_command
import logging
def body():
    logging.getLogger("people_counter.t").info("counting")
    logging.getLogger("people_counter.t").warning("input dropped")
    from people_counter.errors import ConfigError
    raise ConfigError("input.source: bad")
sys.exit(run_command("people-counter", False, body))
"""


def test_a_command_under_systemd_prefixes_its_lines_and_its_error(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as stderr:
        done = subprocess.run([sys.executable, "-c", COMMAND], stderr=stderr, check=False, timeout=60)
    assert done.returncode == 2
    assert (tmp_path / "stderr").read_text().splitlines() == [
        "<6>INFO people_counter.t: counting",
        "<4>WARNING people_counter.t: input dropped",
        "<3>people-counter: input.source: bad",
    ]
