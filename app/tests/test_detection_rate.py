"""Which frames go to the detector: at most detect_fps a second, on a grid that does not drift."""

from __future__ import annotations

import pytest

from people_counter.vision.detection_rate import DetectionSchedule


@pytest.mark.parametrize(
    ("camera_fps", "detect_fps", "expected"),
    [(25.0, 10.0, 100), (25.0, 5.0, 50), (10.0, 10.0, 100), (10.0, 5.0, 50), (30.0, 12.5, 125), (7.0, 10.0, 70)],
)
def test_detections_over_ten_seconds(camera_fps: float, detect_fps: float, expected: int) -> None:
    schedule = DetectionSchedule(detect_fps)
    assert sum(schedule.due(1000.0 + i / camera_fps) for i in range(int(10 * camera_fps))) == expected


def test_every_frame_without_a_rate() -> None:
    schedule = DetectionSchedule(None)
    assert all(schedule.due(1000.0 + i / 25) for i in range(50))


def test_the_first_frame_and_a_clock_that_goes_back_are_detected() -> None:
    schedule = DetectionSchedule(5.0)
    assert [schedule.due(t) for t in (10.0, 10.04, 10.2, 3.0, 3.04, 3.2)] == [True, False, True, True, False, True]


def test_a_long_pause_restarts_the_grid() -> None:
    schedule = DetectionSchedule(10.0)
    assert schedule.due(0.0)
    assert schedule.due(5.0)  # the input stalled for 5 s
    assert not schedule.due(5.04)
    assert schedule.due(5.1)
