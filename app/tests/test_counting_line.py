"""The counting line's geometry and per-track state in detail: what mutation testing showed untested."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from people_counter.config import CountingConfig
from people_counter.counting.counter import LINE_MARGIN_FRACTION, CountingLine, PeopleCounter, segments_intersect
from people_counter.stage_data import EndedTrack, LineSideSnapshot, PersonTrack, TrackerOutput

Point = tuple[int, int]


def reference_intersect(p: Point, q: Point, a: Point, b: Point) -> bool:
    """Whether segments p-q and a-b share a point, solved exactly in fractions (an independent oracle)."""

    def cross(u: tuple[int, int], v: tuple[int, int]) -> int:
        return u[0] * v[1] - u[1] * v[0]

    r = (q[0] - p[0], q[1] - p[1])
    s = (b[0] - a[0], b[1] - a[1])
    ap = (a[0] - p[0], a[1] - p[1])
    denominator = cross(r, s)
    if denominator != 0:
        t = Fraction(cross(ap, s), denominator)
        u = Fraction(cross(ap, r), denominator)
        return 0 <= t <= 1 and 0 <= u <= 1
    if cross(ap, r) != 0:
        return False  # parallel, on different lines
    axis = 0 if s[0] != 0 else 1  # collinear: compare the extents along an axis the line spans
    return max(min(p[axis], q[axis]), min(a[axis], b[axis])) <= min(max(p[axis], q[axis]), max(a[axis], b[axis]))


def test_segments_intersect_agrees_with_an_exact_oracle_on_every_small_case() -> None:
    """Every pair of segments between the points of a 4 x 3 grid: crossing, touching at an end,
    collinear and overlapping, collinear apart, parallel, in every direction."""
    grid = [(x, y) for x in range(4) for y in range(3)]
    segments = [(p, q) for p, q in itertools.permutations(grid, 2)]
    wrong = [
        (p, q, a, b)
        for (p, q), (a, b) in itertools.product(segments, repeat=2)
        if segments_intersect(p, q, a, b) != reference_intersect(p, q, a, b)
    ]
    assert not wrong, wrong[:10]


def test_a_frame_size_must_be_positive() -> None:
    for size in [(0, 100), (100, 0), (-5, 100), (100, -5)]:
        with pytest.raises(ValueError, match=r"frame size must be positive, got"):
            CountingLine(((0.0, 0.5), (1.0, 0.5)), size)
    assert CountingLine(((0.0, 0.5), (1.0, 0.5)), (1, 1)).p2 == (1.0, 0.5)


def feet_box(x: float, y: float, height: float = 100.0) -> tuple[float, float, float, float]:
    return (x - 20.0, y - height, x + 20.0, y)


# A slanted line that starts away from the origin: p1 (200, 100), p2 (800, 900) in a 1000 x 1000
# frame. Its length is 1000 and its unit normal, to the right of p1 -> p2 on screen, is (-0.8, 0.6).
SLANTED = ((0.2, 0.1), (0.8, 0.9))
MIDDLE = (500.0, 500.0)
NORMAL = (-0.8, 0.6)


def off_the_line(distance: float) -> tuple[float, float]:
    """The point `distance` px from the middle of the slanted line, along its normal (+: right)."""
    return (MIDDLE[0] + NORMAL[0] * distance, MIDDLE[1] + NORMAL[1] * distance)


def test_the_dead_band_is_measured_in_pixels_across_a_slanted_line() -> None:
    """A box 100 px high has a 10 px dead band: 9.5 px off the line decides nothing, 10.5 px does."""
    assert LINE_MARGIN_FRACTION * 100.0 == 10.0
    line = CountingLine(SLANTED, (1000, 1000))
    assert line.observe(1, feet_box(*off_the_line(-30.0))) is None  # settles left
    assert line.observe(1, feet_box(*off_the_line(9.5))) is None  # in the band: undecided
    assert line.sides() == (LineSideSnapshot(track_id=1, side=-1, point=pytest.approx(off_the_line(-30.0))),)
    assert line.observe(1, feet_box(*off_the_line(10.5))) == "in"
    assert line.observe(1, feet_box(*off_the_line(-9.5))) is None
    assert line.observe(1, feet_box(*off_the_line(-10.5))) == "out"


def test_a_box_with_no_height_has_no_dead_band() -> None:
    line = CountingLine(SLANTED, (1000, 1000))
    assert line.observe(1, feet_box(*off_the_line(-0.05), height=0.0)) is None
    assert line.observe(1, feet_box(*off_the_line(0.05), height=0.0)) == "in"
    assert [(s.track_id, s.side) for s in line.sides()] == [(1, 1)]


def test_the_edges_of_the_dead_band_on_a_level_line() -> None:
    """On the default line (y 500 of 1000) distances are exact: exactly the margin away decides the
    side, and so does exactly 1 px away with no margin; only on the line itself is nothing decided."""
    line = CountingLine(((0.0, 0.5), (1.0, 0.5)), (1000, 1000))
    assert line.observe(1, feet_box(300.0, 490.0)) is None  # 10 px above: settles "out" side
    assert line.observe(1, feet_box(300.0, 510.0)) == "in"  # exactly 10 px below: decided
    assert line.observe(2, feet_box(300.0, 499.0, height=0.0)) is None
    assert line.observe(2, feet_box(300.0, 501.0, height=0.0)) == "in"  # exactly 1 px, no margin
    assert line.observe(2, feet_box(300.0, 500.0, height=0.0)) is None  # on the line
    assert [(s.track_id, s.side) for s in line.sides()] == [(1, 1), (2, 1)]


def test_sides_round_trip_into_a_new_counter_and_the_crossing_still_counts() -> None:
    """What a restart carries over: the side each person settled on, and where."""
    before = PeopleCounter(CountingConfig(), (1000, 1000))
    person = PersonTrack(7, feet_box(300.0, 400.0), first_seen_ts=0.0)
    before.update(TrackerOutput(ts=0.0, visible=(person,), confirmed=(person,)))
    saved = before.line.sides()
    assert saved == (LineSideSnapshot(track_id=7, side=-1, point=(300.0, 400.0)),)

    after = PeopleCounter(CountingConfig(), (1000, 1000))
    after.restore(saved, loitering_alerted=(7,))
    assert after.line.sides() == saved
    assert after.loitering_alerted == (7,)
    below = PersonTrack(7, feet_box(300.0, 600.0), first_seen_ts=0.0)
    result = after.update(TrackerOutput(ts=100.0, visible=(below,)))  # long past the loitering time
    assert [(c.track_id, c.direction) for c in result.crossings] == [(7, "in")]
    assert not result.alerts  # its loitering alert was sent before the restart


def test_an_ended_track_is_forgotten_by_the_line_and_the_loitering_alerts() -> None:
    counter = PeopleCounter(CountingConfig(loitering_s=1.0), (1000, 1000))
    person = PersonTrack(3, feet_box(300.0, 400.0), first_seen_ts=0.0)
    counter.update(TrackerOutput(ts=0.0, visible=(person,), confirmed=(person,)))
    counter.update(TrackerOutput(ts=2.0, visible=(person,)))
    assert [s.track_id for s in counter.line.sides()] == [3]
    assert counter.loitering_alerted == (3,)
    counter.update(TrackerOutput(ts=3.0, visible=(), ended=(EndedTrack(3, 0.0, 2.0),)))
    assert counter.line.sides() == ()
    assert counter.loitering_alerted == ()


def test_every_crossing_out_counts_and_carries_its_track_and_time() -> None:
    counter = PeopleCounter(CountingConfig(), (1000, 1000))
    results = []
    for track_id, ts in [(1, 10.0), (2, 20.0)]:
        below = PersonTrack(track_id, feet_box(300.0, 600.0), first_seen_ts=ts)
        above = PersonTrack(track_id, feet_box(300.0, 400.0), first_seen_ts=ts)
        counter.update(TrackerOutput(ts=ts, visible=(below,), confirmed=(below,)))
        results.append(counter.update(TrackerOutput(ts=ts + 0.1, visible=(above,))))
    assert [(c.track_id, c.direction, c.ts) for r in results for c in r.crossings] == [
        (1, "out", 10.1),
        (2, "out", 20.1),
    ]
    assert (counter.totals.in_count, counter.totals.out_count) == (0, 2)


def test_a_new_counter_has_nobody_in_view() -> None:
    counter = PeopleCounter(CountingConfig(), (1000, 1000))
    assert counter.count == 0
    assert counter.visible == ()
