"""Progress of a run over a file: a line rewritten in place on a terminal, a line every 10 s in a log."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from test_source import write_clip

from people_counter.outputs.progress import Progress, frames_to_process
from people_counter.vision.source import InputSpec, parse_input


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_one_line_with_speed_and_time_left() -> None:
    terminal, clock = Terminal(), Clock()
    progress = Progress(100, stream=terminal, clock=clock)
    progress.update(1)  # the first frame starts the clock (the model is loaded by then)
    for done in range(2, 51):
        clock.now += 0.125
        progress.update(done)
    progress.finish()
    lines = terminal.getvalue().split("\r")[1:]
    # Rewritten in place every quarter second (every other frame here), and ended with a newline.
    assert len(lines) == 25
    assert lines[-1].startswith("50/100 frames (50%), 8.0 frames/s, 0:06 left") and lines[-1].endswith("\n")
    assert all(not line.endswith("\n") for line in lines[:-1])


def test_a_log_gets_a_line_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(None, stream=log, clock=clock)
    caplog.set_level(logging.INFO, logger="people_counter.progress")
    for done in range(1, 301):
        progress.update(done)
        clock.now += 0.125
    progress.finish()
    assert log.getvalue() == ""
    # 300 frames at 8 a second: 37 s, so a line after 10, 20 and 30 s.
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"progress: {done} frames, 8.0 frames/s" for done in (81, 161, 241)]


def test_only_runs_that_end_show_progress(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 10.0, 30)
    spec = parse_input(str(clip))
    assert frames_to_process(spec, start_frame=5, max_frames=None) == 25
    assert frames_to_process(spec, start_frame=0, max_frames=10) == 10
    assert Progress.for_input(spec, loop=False, start_frame=0, max_frames=None).enabled
    assert not Progress.for_input(spec, loop=True, start_frame=0, max_frames=None).enabled
    camera = InputSpec("camera", 0, "camera 0")
    assert not Progress.for_input(camera, loop=False, start_frame=0, max_frames=None).enabled
