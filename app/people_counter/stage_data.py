"""Plain data passed between the stages: detector -> tracker -> counter -> publishers and store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

BoxArray = npt.NDArray[np.float32]
"""Detections of one frame: shape (N, 5), columns x1, y1, x2, y2 (pixels) and score."""

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class DetectionResult:
    frame_index: int
    boxes: BoxArray
    inference_ms: float


@dataclass(frozen=True, slots=True)
class PersonTrack:
    """A confirmed person as the tracker sees them on one frame."""

    track_id: int
    box: Box
    first_seen_ts: float
    missed: bool = False
    """True while the track is bridged over a detection gap (its box is the prediction)."""


@dataclass(frozen=True, slots=True)
class EndedTrack:
    track_id: int
    first_seen_ts: float
    last_seen_ts: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.last_seen_ts - self.first_seen_ts)


@dataclass(frozen=True, slots=True)
class TrackerOutput:
    ts: float
    visible: tuple[PersonTrack, ...]
    """Confirmed tracks in view now, including those bridged over a short gap."""
    confirmed: tuple[PersonTrack, ...] = ()
    """Tracks confirmed on this frame (each is also in `visible`)."""
    ended: tuple[EndedTrack, ...] = ()
    """Confirmed tracks that ended on this frame."""


@dataclass(frozen=True, slots=True)
class PersonEvent:
    type: Literal["enter", "exit"]
    track_id: int
    ts: float
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class LineCrossing:
    track_id: int
    direction: Literal["in", "out"]
    ts: float


@dataclass(frozen=True, slots=True)
class Alert:
    type: Literal["occupancy", "loitering"]
    value: float
    threshold: float
    ts: float
    track_id: int | None = None


@dataclass(slots=True)
class Totals:
    """What survives a restart: the running totals since the last reset."""

    total: int = 0
    in_count: int = 0
    out_count: int = 0
    dwell_sum_s: float = 0.0
    dwell_count: int = 0

    @property
    def avg_duration_s(self) -> float:
        return self.dwell_sum_s / self.dwell_count if self.dwell_count else 0.0


@dataclass(frozen=True, slots=True)
class CountingResult:
    """What the counter found on one frame."""

    events: tuple[PersonEvent, ...] = ()
    crossings: tuple[LineCrossing, ...] = ()
    alerts: tuple[Alert, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.events or self.crossings or self.alerts)


InputStatus = Literal["ok", "reconnecting", "ended"]
InputStream = Literal["main", "sub"]
"""The camera's stream counted: its `input.source` ("main"), or its `input.substream` ("sub")."""
StoreStatus = Literal["ok", "degraded"]


@dataclass(frozen=True, slots=True)
class CounterState:
    """What the counter reports on every frame; contract.state_message makes the MQTT `state` of it."""

    count: int
    total: int
    in_count: int
    out_count: int
    avg_duration_s: float
    fps: float
    inference_ms: float
    dropped_frames: int
    input: InputStatus
    uptime_s: float
    ts: float
    store: StoreStatus = "ok"
    """"degraded" while the database cannot be written (a full or read-only disk): counts wait in memory."""
    input_down_s: float = 0.0
    """How long the input has been down (from its first failed open or read); 0.0 while frames come."""
    input_stream: InputStream = "main"
    """"sub" while the configured sub-stream is counted; "main" otherwise (also with none configured)."""
    extra: dict[str, object] = field(default_factory=dict)
    occupancy_alert: bool = False
    """Too many people in view for too long now (the occupancy alert was raised and holds)."""
    loitering_alert: bool = False
    """Someone in view now stayed longer than the loitering limit."""

    def figures(self) -> tuple[object, ...]:
        """The fields whose change is worth a new message (not the clock-driven ones)."""
        return (
            self.count,
            self.total,
            self.in_count,
            self.out_count,
            self.input,
            self.input_stream,
            self.dropped_frames > 0,
            self.occupancy_alert,
            self.loitering_alert,
        )


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """One confirmed track as the tracker holds it, to be carried across a restart."""

    track_id: int
    first_seen_ts: float
    last_seen_ts: float
    box: Box
    """Where it was last detected."""
    velocity: tuple[float, float]
    """Of the box centre, pixels a second."""
    hits: int
    lost: bool
    """Out of view but still recognisable (see the tracker's life cycle)."""
    look: tuple[float, ...] | None = None
    still_at: tuple[float, float] | None = None
    still_since_ts: float | None = None


@dataclass(frozen=True, slots=True)
class LineSideSnapshot:
    """Where a track's feet last settled relative to the counting line."""

    track_id: int
    side: int
    point: tuple[float, float]


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    """The people in view and their state, saved with the totals so that a restart goes on with them.

    `clock_ts` is the frame timestamp it was taken at (the tracker's clock). `media_ts` is that
    frame's position in a recorded file (seconds from its start), None for a live source: a file
    replayed from a later frame is matched by its own clock, a camera by the wall clock."""

    clock_ts: float
    media_ts: float | None
    tracks: tuple[TrackSnapshot, ...]
    line_sides: tuple[LineSideSnapshot, ...] = ()
    loitering_alerted: tuple[int, ...] = ()
