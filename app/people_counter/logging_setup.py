"""Logging for every command: syslog priorities for the journal, and a brake on repeated lines.

Under systemd (stderr is the journal stream that JOURNAL_STREAM names), each line starts with
its sd-daemon priority, `<3>` to `<7>` (sd-daemon(3)), so `journalctl -p warning` shows the
warnings and errors. Anywhere else the lines are plain.

A line at WARNING or above that repeats (same logger, level and message template) within
`REPEAT_WINDOW_S` is held back; the next one let through says how many were.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

LINE_FORMAT = "%(levelname)s %(name)s: %(message)s"
REPEAT_WINDOW_S = 10.0

ERR, WARNING, INFO, DEBUG = 3, 4, 6, 7
"""The syslog priorities sd-daemon(3) reads from a line's `<N>` prefix."""


def syslog_priority(levelno: int) -> int:
    if levelno >= logging.ERROR:
        return ERR
    if levelno >= logging.WARNING:
        return WARNING
    return INFO if levelno >= logging.INFO else DEBUG


def writes_to_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal connection systemd gave this process (systemd.exec(5):
    JOURNAL_STREAM is "device:inode" of it; a child that redirected its stderr keeps the variable)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


class JournalFormatter(logging.Formatter):
    """Starts every line of a record (a traceback's too) with its `<N>` priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class RepeatFilter(logging.Filter):
    """Lets a repeated warning or error through at most once per `window_s`; counts the rest.

    Repeated means the same logger, level and message template (`record.msg`): a flood comes
    from one line of code, with arguments that differ. `clock` is injectable for tests.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        """Per key: when one was last let through, and how many were held back since."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        passed_at, held = self._last.get(key, (float("-inf"), 0))
        if now - passed_at < self._window_s:
            self._last[key] = (passed_at, held + 1)
            return False
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this suppressed in the last {now - passed_at:.0f} s)"
            record.args = None
        return True


def configure_logging(verbose: bool, stream: TextIO | None = None) -> None:
    """The root logger for a command: INFO (DEBUG with --verbose) to `stream` (stderr), journal-aware."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    journal = writes_to_journal(stream)
    handler.setFormatter(JournalFormatter(LINE_FORMAT) if journal else logging.Formatter(LINE_FORMAT))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def error_line(text: str, stream: TextIO | None = None) -> None:
    """A command's one-line error (to stderr), at priority err in the journal."""
    stream = sys.stderr if stream is None else stream
    print(f"<{ERR}>{text}" if writes_to_journal(stream) else text, file=stream)
