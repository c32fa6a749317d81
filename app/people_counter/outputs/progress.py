"""Progress of a run over a video file: frames done, speed and time left, on stderr.

Only runs that end (a file played once) show progress: a camera or a looped file runs for good,
and a line every few seconds in a device's journal would say nothing new.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

import cv2

from people_counter.vision.source import InputSpec

log = logging.getLogger("people_counter.progress")

TERMINAL_INTERVAL_S = 0.25
LOG_INTERVAL_S = 10.0


def frames_to_process(spec: InputSpec, start_frame: int, max_frames: int | None) -> int | None:
    """How many frames a run over `spec` will count, when the container says; None if unknown."""
    capture = cv2.VideoCapture(spec.target)
    in_file = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    if in_file <= 0:
        return max_frames
    left = max(in_file - start_frame, 0)
    return left if max_frames is None else min(left, max_frames)


class Progress:
    """Frames done, frames a second and the time left.

    On a terminal one line is rewritten in place; in a log (stderr not a terminal) a line is
    logged every `LOG_INTERVAL_S`.
    """

    def __init__(
        self,
        total_frames: int | None,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_frames = total_frames
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stderr
        self._on_terminal = self._stream.isatty()
        self._clock = clock
        self._started_at: float | None = None
        self._next_at = 0.0
        self._frames_done = 0

    @classmethod
    def for_input(cls, spec: InputSpec, loop: bool, start_frame: int, max_frames: int | None) -> Progress:
        if spec.kind != "file" or loop:
            return cls(None, enabled=False)
        return cls(frames_to_process(spec, start_frame, max_frames))

    def update(self, frames_done: int) -> None:
        if not self.enabled:
            return
        now = self._clock()
        self._frames_done = frames_done
        if self._started_at is None:
            # Speed is measured from the first frame done, so that loading the model is not in it.
            self._started_at = now
            self._next_at = now + (TERMINAL_INTERVAL_S if self._on_terminal else LOG_INTERVAL_S)
            return
        if now < self._next_at:
            return
        self._next_at = now + (TERMINAL_INTERVAL_S if self._on_terminal else LOG_INTERVAL_S)
        if self._on_terminal:
            self._stream.write(f"\r{self.describe(now)}  ")
            self._stream.flush()
        else:
            log.info("progress: %s", self.describe(now))

    def finish(self) -> None:
        """End the line rewritten in place, showing the last figures."""
        if self.enabled and self._on_terminal and self._started_at is not None:
            self._stream.write(f"\r{self.describe(self._clock())}  \n")
            self._stream.flush()

    def describe(self, now: float) -> str:
        done = self._frames_done
        elapsed = now - (self._started_at if self._started_at is not None else now)
        # The first frame starts the clock, so frames after it are the ones timed.
        fps = (done - 1) / elapsed if elapsed > 0 and done > 1 else 0.0
        total = self.total_frames
        if total is None:
            return f"{done} frames, {fps:.1f} frames/s"
        share = 100.0 * done / total if total else 100.0
        eta = f", {_clock_time(max(total - done, 0) / fps)} left" if fps > 0 else ""
        return f"{done}/{total} frames ({share:.0f}%), {fps:.1f} frames/s{eta}"


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
