"""From tracks to the figures of the MQTT contract: count, total, enter/exit, in/out, dwell, alerts.

The words are those of DESIGN.md: `count` is the confirmed tracks in view now (bridged ones
included), `total` counts confirmed tracks since the last reset, `enter`/`exit` are a track confirmed
and a track ended, `in`/`out` are crossings of the configured line, `avg_duration_s` is the mean
dwell of finished tracks.

The counting line
-----------------
The line is a SEGMENT p1 -> p2 given in normalised image coordinates and scaled by the frame size.
A person is placed at the bottom centre of their box, their feet: the line is meant to be drawn on
the floor, and the feet are where a person touches the floor, so they cross it when the person does,
whatever their height and wherever the camera looks from. The box centre floats about half a body
above the floor and, seen from a high camera, crosses a floor line well before or after the person.

Direction: "in" is a crossing from the LEFT of the directed line p1 -> p2 to its RIGHT, left and
right as seen on the screen when facing from p1 towards p2 (image y points down). With the default
line from (0, 0.5) to (1, 0.5) the right side is the lower half of the picture, so "in" is walking
down the picture and "out" is walking up. Swap p1 and p2 to swap the directions.

Hysteresis: a side only counts once the feet are at least `LINE_MARGIN_FRACTION` of the box height
away from the line. Feet jitter a few percent of a height from frame to frame; without a dead band a
person standing on the line would count in and out over and over. A crossing is the feet settling on
the other side from where they last settled, with the path between those two settled positions
passing through the segment; going past the end of the segment changes the side but counts nothing.
Each real crossing counts: in, then back out, is one `in` and one `out`.

Only detected positions are used, never the tracker's predictions over a gap: a bridged track
extrapolates the last velocity, and a person who stopped just before the line would otherwise be
counted across it by a prediction that then dies. A person who really crossed during a gap is
counted when they are detected again on the other side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from people_counter.config import CountingConfig
from people_counter.stage_data import (
    Alert,
    Box,
    CountingResult,
    EndedTrack,
    LineCrossing,
    LineSideSnapshot,
    PersonEvent,
    PersonTrack,
    Totals,
    TrackerOutput,
)

LINE_MARGIN_FRACTION = 0.1
"""Dead band each side of the line, as a fraction of the person's box height (perspective-fair)."""

Point = tuple[float, float]


def feet_point(box: Box) -> Point:
    """The reference point of a person: the bottom centre of the box (see the module doc for why)."""
    x1, _, x2, y2 = box
    return ((x1 + x2) * 0.5, y2)


def _cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o): positive when b is right of o -> a as seen on screen (y down)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def segments_intersect(p: Point, q: Point, a: Point, b: Point) -> bool:
    """True when segment p-q meets segment a-b (touching counts)."""
    d1 = _cross(a, b, p)
    d2 = _cross(a, b, q)
    d3 = _cross(p, q, a)
    d4 = _cross(p, q, b)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True

    def on_segment(o: Point, s: Point, e: Point) -> bool:
        return min(s[0], e[0]) <= o[0] <= max(s[0], e[0]) and min(s[1], e[1]) <= o[1] <= max(s[1], e[1])

    return (
        (d1 == 0 and on_segment(p, a, b))
        or (d2 == 0 and on_segment(q, a, b))
        or (d3 == 0 and on_segment(a, p, q))
        or (d4 == 0 and on_segment(b, p, q))
    )


@dataclass(slots=True)
class _LineSide:
    """Where a track's feet last settled clearly on one side of the line."""

    side: int
    """+1 right of p1 -> p2, -1 left."""
    point: Point


class CountingLine:
    """The configured line in pixels, and each track's side of it with hysteresis."""

    def __init__(self, line: tuple[Point, Point], frame_size: tuple[int, int]) -> None:
        self._normalised = line
        self._settled: dict[int, _LineSide] = {}
        self._frame_size = frame_size
        self.p1: Point = (0.0, 0.0)
        self.p2: Point = (0.0, 0.0)
        self._length = 1.0
        self.set_frame_size(frame_size)

    @property
    def normalised(self) -> tuple[Point, Point]:
        return self._normalised

    def set_frame_size(self, frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {frame_size}")
        (ax, ay), (bx, by) = self._normalised
        self.p1 = (ax * width, ay * height)
        self.p2 = (bx * width, by * height)
        self._length = max(((self.p2[0] - self.p1[0]) ** 2 + (self.p2[1] - self.p1[1]) ** 2) ** 0.5, 1e-9)
        self._frame_size = frame_size
        # Settled points were in the old pixel space, or relative to the old line; start afresh.
        self._settled.clear()

    def set_line(self, line: tuple[Point, Point]) -> None:
        if line != self._normalised:
            self._normalised = line
            self.set_frame_size(self._frame_size)

    def observe(self, track_id: int, box: Box) -> str | None:
        """Feed one detected box; returns "in" or "out" when this observation completes a crossing."""
        feet = feet_point(box)
        signed_distance = _cross(self.p1, self.p2, feet) / self._length
        margin = LINE_MARGIN_FRACTION * max(box[3] - box[1], 0.0)
        if abs(signed_distance) < margin or signed_distance == 0.0:
            return None  # in the dead band: the side is not decided yet
        side = 1 if signed_distance > 0 else -1
        previous = self._settled.get(track_id)
        self._settled[track_id] = _LineSide(side=side, point=feet)
        if previous is None or previous.side == side:
            return None
        if not segments_intersect(previous.point, feet, self.p1, self.p2):
            return None  # went round the end of the segment
        return "in" if side > 0 else "out"

    def forget(self, track_id: int) -> None:
        self._settled.pop(track_id, None)

    def sides(self) -> tuple[LineSideSnapshot, ...]:
        """Each track's settled side, to carry across a restart."""
        return tuple(LineSideSnapshot(track_id=i, side=s.side, point=s.point) for i, s in self._settled.items())

    def restore_side(self, saved: LineSideSnapshot) -> None:
        self._settled[saved.track_id] = _LineSide(side=saved.side, point=saved.point)


class DwellTimer:
    """Dwell is last seen minus first seen; the average is over finished tracks, kept in Totals."""

    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    @staticmethod
    def so_far(track: PersonTrack, ts: float) -> float:
        """A visible person's dwell up to `ts`, for annotation and loitering."""
        return max(0.0, ts - track.first_seen_ts)

    def finish(self, ended: EndedTrack) -> float:
        duration = ended.duration_s
        self.totals.dwell_sum_s += duration
        self.totals.dwell_count += 1
        return duration


class OccupancyAlarm:
    """Fires once when the count stays above the maximum for `hold_s`; re-arms at or below it."""

    def __init__(self, maximum: int, hold_s: float) -> None:
        self.maximum = maximum
        self.hold_s = hold_s
        self._over_since: float | None = None
        self._fired = False

    def update(self, count: int, ts: float) -> Alert | None:
        if count <= self.maximum:
            self._over_since = None
            self._fired = False
            return None
        if self._over_since is None:
            self._over_since = ts
        if self._fired or ts - self._over_since < self.hold_s:
            return None
        self._fired = True
        return Alert(type="occupancy", value=float(count), threshold=float(self.maximum), ts=ts)

    @property
    def raised(self) -> bool:
        """The alert fired and the count is still above the maximum."""
        return self._fired


class PeopleCounter:
    """Turns each TrackerOutput into running totals, enter/exit events, line crossings and alerts.

    `totals` is updated in place, so the store can hold the same object and persist it; pass the
    persisted one to continue after a restart.
    """

    def __init__(self, cfg: CountingConfig, frame_size: tuple[int, int], totals: Totals | None = None) -> None:
        self._cfg = cfg
        self.totals = totals if totals is not None else Totals()
        self.line = CountingLine(cfg.line, frame_size)
        self.dwell = DwellTimer(self.totals)
        self._occupancy = OccupancyAlarm(cfg.occupancy_max, cfg.occupancy_s)
        self._loitering_alerted: set[int] = set()
        self._visible: tuple[PersonTrack, ...] = ()

    @property
    def count(self) -> int:
        """People in view now: confirmed tracks, bridged ones included."""
        return len(self._visible)

    @property
    def visible(self) -> tuple[PersonTrack, ...]:
        return self._visible

    @property
    def line_px(self) -> tuple[Point, Point]:
        """The counting line in pixels, p1 then p2, for drawing (its right side is "in")."""
        return (self.line.p1, self.line.p2)

    def reconfigure(self, cfg: CountingConfig) -> None:
        """Apply a reloaded config without losing counts (SIGHUP).

        Totals, the people in view and the loitering alerts already sent stay. A moved line forgets
        which side each person was on, so nobody is counted across a line they never crossed. The
        running occupancy episode keeps its start under the new thresholds.
        """
        self._cfg = cfg
        self.line.set_line(cfg.line)
        self._occupancy.maximum = cfg.occupancy_max
        self._occupancy.hold_s = cfg.occupancy_s

    @property
    def occupancy_alert(self) -> bool:
        return self._occupancy.raised

    @property
    def loitering_alerted(self) -> tuple[int, ...]:
        """The tracks in view whose loitering alert was sent."""
        return tuple(sorted(self._loitering_alerted))

    def restore(self, sides: Iterable[LineSideSnapshot], loitering_alerted: Iterable[int]) -> None:
        """Take back, after a restart, the line sides and loitering alerts of the people still in view."""
        for side in sides:
            self.line.restore_side(side)
        self._loitering_alerted.update(loitering_alerted)

    def update(self, tracks: TrackerOutput) -> CountingResult:
        ts = tracks.ts
        events: list[PersonEvent] = []
        crossings: list[LineCrossing] = []
        alerts: list[Alert] = []

        # Events carry the time the thing happened to the person (first detection, last
        # detection), not the time the tracker became sure of it.
        for track in tracks.confirmed:
            self.totals.total += 1
            events.append(PersonEvent(type="enter", track_id=track.track_id, ts=track.first_seen_ts))

        for track in tracks.visible:
            if not track.missed:
                direction = self.line.observe(track.track_id, track.box)
                if direction == "in":
                    self.totals.in_count += 1
                    crossings.append(LineCrossing(track_id=track.track_id, direction="in", ts=ts))
                elif direction == "out":
                    self.totals.out_count += 1
                    crossings.append(LineCrossing(track_id=track.track_id, direction="out", ts=ts))
            age = self.dwell.so_far(track, ts)
            if age > self._cfg.loitering_s and track.track_id not in self._loitering_alerted:
                self._loitering_alerted.add(track.track_id)
                alerts.append(
                    Alert(
                        type="loitering",
                        value=age,
                        threshold=self._cfg.loitering_s,
                        ts=ts,
                        track_id=track.track_id,
                    )
                )

        for ended in tracks.ended:
            duration = self.dwell.finish(ended)
            events.append(PersonEvent(type="exit", track_id=ended.track_id, ts=ended.last_seen_ts, duration_s=duration))
            self.line.forget(ended.track_id)
            self._loitering_alerted.discard(ended.track_id)

        self._visible = tracks.visible
        occupancy = self._occupancy.update(len(tracks.visible), ts)
        if occupancy is not None:
            alerts.append(occupancy)
        return CountingResult(events=tuple(events), crossings=tuple(crossings), alerts=tuple(alerts))

    def reset(self) -> None:
        """Start a new count: the totals go to zero, in place (the history is the store's).

        The people in view stay in view and are not counted again: each person is in exactly one
        period's total. Their line sides, loitering alerts and the occupancy episode are about the
        present, so they are kept; a person in view at the reset who leaves later adds their dwell
        to the new period, where their exit happens.
        """
        self.totals.total = 0
        self.totals.in_count = 0
        self.totals.out_count = 0
        self.totals.dwell_sum_s = 0.0
        self.totals.dwell_count = 0
