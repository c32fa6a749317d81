"""Which frames go to the detector: at most `detect_fps` a second, whatever the camera sends.

A 25 fps camera does not need 25 detections a second to follow people who walk at about one body
height a second: the tracker predicts where everyone is between detected frames. The frames in
between are skipped on purpose; they still update the live view and the figures.
"""

from __future__ import annotations

_SLACK = 0.1
"""Share of the period by which a frame may come early and still be detected: camera timestamps
jitter, and a frame 1 ms early should not push its detection to the next frame."""


class DetectionSchedule:
    def __init__(self, detect_fps: float | None) -> None:
        self._period_s = 0.0 if detect_fps is None else 1.0 / detect_fps
        self._next_ts: float | None = None

    def due(self, ts: float) -> bool:
        """True when the frame at `ts` should be detected (frames come in time order)."""
        if self._period_s == 0.0:
            return True
        if self._next_ts is not None and self._next_ts - self._period_s <= ts < self._next_ts - _SLACK * self._period_s:
            return False
        if self._next_ts is None or not self._next_ts - self._period_s <= ts < self._next_ts + self._period_s:
            # The first frame, a clock that went back (a looped file), or a long pause: start afresh.
            self._next_ts = ts + self._period_s
        else:
            self._next_ts += self._period_s  # on the grid, so the rate does not drift
        return True
