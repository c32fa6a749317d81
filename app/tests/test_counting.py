"""The counter on plain TrackerOutputs: totals, events, line crossings, dwell, alerts, reset."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from people_counter.config import CountingConfig, TrackerConfig
from people_counter.counting.counter import CountingLine, DwellTimer, PeopleCounter, feet_point, segments_intersect
from people_counter.stage_data import CountingResult, EndedTrack, PersonTrack, Totals, TrackerOutput
from people_counter.vision.tracker import PersonTracker

FRAME = (1000, 1000)  # square, so normalised 0.5 is pixel 500 both ways
HEIGHT = 100.0  # box height: the line's dead band is 10% of it, 10 px


def track(track_id: int, feet_x: float, feet_y: float, first_seen: float = 0.0, missed: bool = False) -> PersonTrack:
    box = (feet_x - 20.0, feet_y - HEIGHT, feet_x + 20.0, feet_y)
    return PersonTrack(track_id=track_id, box=box, first_seen_ts=first_seen, missed=missed)


def walk_feet(
    counter: PeopleCounter, track_id: int, points: Iterable[tuple[float, float]], start_ts: float = 0.0
) -> list[CountingResult]:
    """One confirmed person whose feet visit the points, one frame (0.1 s) each."""
    results = []
    for i, (x, y) in enumerate(points):
        person = track(track_id, x, y, first_seen=start_ts)
        out = TrackerOutput(ts=start_ts + i / 10, visible=(person,), confirmed=(person,) if i == 0 else ())
        results.append(counter.update(out))
    return results


def directions(results: Iterable[CountingResult]) -> list[str]:
    return [c.direction for r in results for c in r.crossings]


def vertical_path(x: float, y_from: float, y_to: float, step: float = 15.0) -> list[tuple[float, float]]:
    ys = np.arange(y_from, y_to + (step if y_to > y_from else -step) / 2, step if y_to > y_from else -step)
    return [(x, float(y)) for y in ys]


# --- line crossings ------------------------------------------------------------------------------


def test_walking_down_across_the_default_line_is_in_and_up_is_out() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)  # line (0, .5) -> (1, .5): right of it is below
    down = walk_feet(counter, 1, vertical_path(300, 400, 600))
    assert directions(down) == ["in"]
    crossing = next(c for r in down for c in r.crossings)
    assert crossing.track_id == 1
    assert crossing.ts == pytest.approx(0.8)  # feet at 520, the first position 10 px past the line
    up = walk_feet(counter, 2, vertical_path(300, 600, 400), start_ts=10.0)
    assert directions(up) == ["out"]
    assert (counter.totals.in_count, counter.totals.out_count) == (1, 1)


def test_swapping_the_line_points_swaps_in_and_out() -> None:
    counter = PeopleCounter(CountingConfig(line=((1.0, 0.5), (0.0, 0.5))), FRAME)
    assert directions(walk_feet(counter, 1, vertical_path(300, 400, 600))) == ["out"]


def test_diagonal_line_direction_follows_the_cross_product() -> None:
    # p1 top-left -> p2 bottom-right; its right side on screen is the lower-left half
    counter = PeopleCounter(CountingConfig(line=((0.0, 0.0), (1.0, 1.0))), FRAME)
    leftwards = [(float(x), 500.0) for x in range(700, 290, -20)]
    assert directions(walk_feet(counter, 1, leftwards)) == ["in"]
    assert directions(walk_feet(counter, 2, leftwards[::-1], start_ts=10.0)) == ["out"]


def test_jitter_on_the_line_counts_nothing() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    jitter = [(300.0, 500.0 + (8.0 if i % 2 else -8.0)) for i in range(100)]
    assert directions(walk_feet(counter, 1, jitter)) == []
    assert (counter.totals.in_count, counter.totals.out_count) == (0, 0)


def test_jitter_then_a_real_crossing_counts_once() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    rng = np.random.default_rng(1)
    path = [(300.0, 450.0)]
    path += [(300.0, 500.0 + float(rng.uniform(-9.0, 9.0))) for _ in range(50)]
    path += [(300.0, 560.0), (300.0, 600.0)]
    assert directions(walk_feet(counter, 1, path)) == ["in"]


def test_each_real_crossing_back_and_forth_counts() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    path = [(300.0, 450.0), (300.0, 560.0), (300.0, 440.0), (300.0, 505.0), (300.0, 560.0)]
    assert directions(walk_feet(counter, 1, path)) == ["in", "out", "in"]
    assert (counter.totals.in_count, counter.totals.out_count) == (2, 1)


def test_passing_beside_the_segment_does_not_count() -> None:
    counter = PeopleCounter(CountingConfig(line=((0.2, 0.5), (0.5, 0.5))), FRAME)  # x 200..500
    assert directions(walk_feet(counter, 1, vertical_path(700, 400, 600))) == []
    assert directions(walk_feet(counter, 2, vertical_path(300, 400, 600), start_ts=10.0)) == ["in"]
    # going round the end: down beside it, then back up through it counts one "out" only
    around = [*vertical_path(700, 400, 600), (600.0, 600.0), (400.0, 600.0), *vertical_path(400, 600, 400)]
    assert directions(walk_feet(counter, 3, around, start_ts=20.0)) == ["out"]


def test_feet_not_box_centre_decide_the_side() -> None:
    assert feet_point((10.0, 20.0, 30.0, 220.0)) == (20.0, 220.0)
    counter = PeopleCounter(CountingConfig(), FRAME)
    # box centre stays above the line (feet - 50 < 500), the feet cross it
    assert directions(walk_feet(counter, 1, vertical_path(300, 470, 540))) == ["in"]


def test_predicted_positions_over_a_gap_do_not_cross_the_line() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    first = track(1, 300, 440)
    counter.update(TrackerOutput(ts=0.0, visible=(first,), confirmed=(first,)))
    # the tracker coasts the person across the line, then the track ends: nobody was seen crossing
    for i, y in enumerate((480.0, 520.0, 560.0, 600.0), start=1):
        counter.update(TrackerOutput(ts=i / 10, visible=(track(1, 300, y, missed=True),)))
    result = counter.update(
        TrackerOutput(ts=2.0, visible=(), ended=(EndedTrack(track_id=1, first_seen_ts=0.0, last_seen_ts=0.0),))
    )
    assert result.crossings == ()
    assert counter.totals.in_count == 0


def test_a_crossing_during_a_gap_counts_when_seen_again() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    first = track(1, 300, 440)
    counter.update(TrackerOutput(ts=0.0, visible=(first,), confirmed=(first,)))
    counter.update(TrackerOutput(ts=0.1, visible=(track(1, 300, 500, missed=True),)))
    result = counter.update(TrackerOutput(ts=0.2, visible=(track(1, 300, 560),)))
    assert [(c.direction, c.ts) for c in result.crossings] == [("in", 0.2)]


def test_first_sight_beyond_the_line_is_not_a_crossing() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    assert directions(walk_feet(counter, 1, vertical_path(300, 560, 700))) == []


def test_the_line_is_scaled_to_the_frame() -> None:
    counter = PeopleCounter(CountingConfig(), (768, 576))
    assert counter.line.p1 == (0.0, 288.0)
    assert counter.line.p2 == (768.0, 288.0)
    assert directions(walk_feet(counter, 1, vertical_path(300, 250, 330, step=10.0))) == ["in"]
    with pytest.raises(ValueError):
        CountingLine(CountingConfig().line, (0, 576))


def test_segments_intersect_cases() -> None:
    assert segments_intersect((0, 0), (10, 10), (0, 10), (10, 0))
    assert not segments_intersect((0, 0), (4, 4), (0, 10), (10, 0))
    assert segments_intersect((5, 0), (5, 5), (0, 5), (10, 5))  # touching end
    assert not segments_intersect((0, 0), (10, 0), (0, 1), (10, 1))  # parallel
    assert segments_intersect((0, 0), (10, 0), (5, 0), (20, 0))  # collinear overlap


# --- totals, events, dwell -----------------------------------------------------------------------


def test_total_enter_and_exit_events_and_average_dwell() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    a, b = track(1, 100, 100, first_seen=10.0), track(2, 600, 100, first_seen=11.0)
    r1 = counter.update(TrackerOutput(ts=10.2, visible=(a,), confirmed=(a,)))
    r2 = counter.update(TrackerOutput(ts=11.2, visible=(a, b), confirmed=(b,)))
    assert [(e.type, e.track_id, e.ts) for e in r1.events + r2.events] == [
        ("enter", 1, 10.0),
        ("enter", 2, 11.0),
    ]
    assert counter.count == 2
    assert counter.totals.total == 2
    r3 = counter.update(
        TrackerOutput(ts=16.0, visible=(b,), ended=(EndedTrack(track_id=1, first_seen_ts=10.0, last_seen_ts=14.0),))
    )
    r4 = counter.update(
        TrackerOutput(ts=23.0, visible=(), ended=(EndedTrack(track_id=2, first_seen_ts=11.0, last_seen_ts=21.0),))
    )
    exits = [(e.type, e.track_id, e.ts, e.duration_s) for e in r3.events + r4.events]
    assert exits == [("exit", 1, 14.0, 4.0), ("exit", 2, 21.0, 10.0)]
    assert counter.count == 0
    assert counter.totals.total == 2
    assert counter.totals.dwell_count == 2
    assert counter.totals.avg_duration_s == pytest.approx(7.0)


def test_dwell_so_far_of_a_visible_person() -> None:
    person = track(3, 100, 100, first_seen=5.0)
    assert DwellTimer.so_far(person, 12.5) == pytest.approx(7.5)
    assert DwellTimer.so_far(person, 4.0) == 0.0


def test_count_includes_bridged_tracks() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    seen, bridged = track(1, 100, 100), track(2, 600, 100, missed=True)
    counter.update(TrackerOutput(ts=1.0, visible=(seen, bridged)))
    assert counter.count == 2


def test_totals_continue_from_persisted_ones_in_place() -> None:
    persisted = Totals(total=5, in_count=2, out_count=1, dwell_sum_s=30.0, dwell_count=3)
    counter = PeopleCounter(CountingConfig(), FRAME, totals=persisted)
    person = track(9, 100, 100)
    counter.update(TrackerOutput(ts=1.0, visible=(person,), confirmed=(person,)))
    counter.update(TrackerOutput(ts=9.0, visible=(), ended=(EndedTrack(9, 0.0, 6.0),)))
    assert counter.totals is persisted
    assert (persisted.total, persisted.dwell_count) == (6, 4)
    assert persisted.avg_duration_s == pytest.approx(9.0)


def test_an_ended_track_from_before_a_restart_still_gives_its_exit() -> None:
    counter = PeopleCounter(CountingConfig(), FRAME)
    result = counter.update(TrackerOutput(ts=5.0, visible=(), ended=(EndedTrack(7, 1.0, 3.0),)))
    assert [(e.type, e.duration_s) for e in result.events] == [("exit", 2.0)]
    assert counter.totals.total == 0


def test_reset_zeroes_totals_in_place_and_keeps_the_present() -> None:
    counter = PeopleCounter(CountingConfig(occupancy_max=1, occupancy_s=1.0), FRAME)
    totals = counter.totals
    a, b = track(1, 300, 440), track(2, 800, 100)
    counter.update(TrackerOutput(ts=0.0, visible=(a, b), confirmed=(a, b)))
    counter.update(TrackerOutput(ts=0.5, visible=(a, b)))
    counter.reset()
    assert counter.totals is totals
    assert (totals.total, totals.in_count, totals.out_count, totals.dwell_count) == (0, 0, 0, 0)
    assert totals.avg_duration_s == 0.0
    assert counter.count == 2  # still in view, and not counted again
    # the occupancy episode runs on across the reset: over since 0.0, fires at 1.0
    result = counter.update(TrackerOutput(ts=1.0, visible=(track(1, 300, 560), b)))
    assert [al.type for al in result.alerts] == ["occupancy"]
    assert [c.direction for c in result.crossings] == ["in"]  # side settled before the reset
    c = track(3, 500, 100, first_seen=1.1)
    counter.update(TrackerOutput(ts=1.2, visible=(b, c), confirmed=(c,), ended=(EndedTrack(1, 0.0, 1.0),)))
    assert (totals.total, totals.in_count, totals.dwell_count) == (1, 1, 1)
    assert totals.avg_duration_s == pytest.approx(1.0)


# --- alerts --------------------------------------------------------------------------------------


def crowd(n: int, ts: float) -> TrackerOutput:
    return TrackerOutput(ts=ts, visible=tuple(track(i + 1, 50.0 * i, 100, first_seen=ts) for i in range(n)))


def test_occupancy_fires_once_after_the_hold_and_rearms() -> None:
    counter = PeopleCounter(CountingConfig(occupancy_max=2, occupancy_s=5.0, loitering_s=1000.0), FRAME)
    fired = []
    timeline = [(t / 10, 3) for t in range(0, 200)]  # over from 0 s to 19.9 s
    timeline += [(20.0 + t / 10, 2) for t in range(10)]  # at the maximum: re-arms
    timeline += [(21.0 + t / 10, 4) for t in range(100)]  # over again from 21 s
    for ts, n in timeline:
        for alert in counter.update(crowd(n, ts)).alerts:
            fired.append((alert.type, round(alert.ts, 3), alert.value, alert.threshold))
    assert fired == [("occupancy", 5.0, 3.0, 2.0), ("occupancy", 26.0, 4.0, 2.0)]


def test_occupancy_alert_holds_from_the_alert_until_the_count_is_back_at_the_maximum() -> None:
    """The state's occupancy_alert (Home Assistant's binary sensor)."""
    counter = PeopleCounter(CountingConfig(occupancy_max=2, occupancy_s=5.0, loitering_s=1000.0), FRAME)
    held = []
    for ts, n in [(t / 10, 3) for t in range(100)] + [(10.0 + t / 10, 2) for t in range(10)]:
        counter.update(crowd(n, ts))
        held.append(counter.occupancy_alert)
    assert held == [False] * 50 + [True] * 50 + [False] * 10


def test_occupancy_must_be_continuous() -> None:
    counter = PeopleCounter(CountingConfig(occupancy_max=2, occupancy_s=5.0), FRAME)
    fired = []
    for t in range(150):
        ts = t / 10
        n = 2 if 40 <= t < 45 else 3  # a dip at 4.0-4.4 s restarts the clock
        fired += [a.ts for a in counter.update(crowd(n, ts)).alerts]
    assert fired == [pytest.approx(9.5)]


def test_occupancy_with_zero_hold_fires_at_once() -> None:
    counter = PeopleCounter(CountingConfig(occupancy_max=1, occupancy_s=0.0), FRAME)
    assert counter.update(crowd(1, 0.0)).alerts == ()
    assert [a.type for a in counter.update(crowd(2, 0.1)).alerts] == ["occupancy"]


def test_loitering_fires_once_per_track() -> None:
    counter = PeopleCounter(CountingConfig(loitering_s=30.0), FRAME)
    alerts = []
    for t in range(0, 700):
        ts = t / 10
        people = [track(1, 100, 100, first_seen=0.0)]
        if ts >= 20.0:
            people.append(track(2, 600, 100, first_seen=20.0))
        result = counter.update(TrackerOutput(ts=ts, visible=tuple(people)))
        alerts += [(a.track_id, round(a.ts, 3), round(a.value, 3), a.threshold) for a in result.alerts]
    assert alerts == [(1, 30.1, 30.1, 30.0), (2, 50.1, 30.1, 30.0)]


def test_loitering_counts_a_bridged_track_too() -> None:
    counter = PeopleCounter(CountingConfig(loitering_s=10.0), FRAME)
    result = counter.update(TrackerOutput(ts=11.0, visible=(track(1, 100, 100, missed=True),)))
    assert [(a.type, a.track_id) for a in result.alerts] == [("loitering", 1)]


# --- with the real tracker -----------------------------------------------------------------------


def test_tracker_and_counter_person_missed_at_the_line_is_counted_once() -> None:
    """The original bug: missed frames next to the line made a second person and a second crossing."""
    tracker = PersonTracker(TrackerConfig())
    counter = PeopleCounter(CountingConfig(), (768, 576))
    results = []
    for i in range(40):
        bottom = 150.0 + 12.0 * i  # walking down; the line is at y 288, crossed around frame 12
        boxes = np.zeros((0, 5), np.float32)
        if i not in (11, 12, 13) and bottom < 560:
            boxes = np.array([[330.0, bottom - 110.0, 374.0, bottom, 0.8]], np.float32)
        results.append(counter.update(tracker.update(boxes, i / 10)))
    results.append(counter.update(tracker.end_all(4.0)))
    assert counter.totals.total == 1
    assert (counter.totals.in_count, counter.totals.out_count) == (1, 0)
    events = [(e.type, e.track_id) for r in results for e in r.events]
    assert events == [("enter", 1), ("exit", 1)]
    assert counter.totals.dwell_count == 1


def test_line_px_is_the_line_in_pixels() -> None:
    counter = PeopleCounter(CountingConfig(line=((0.25, 0.0), (0.75, 1.0))), (800, 600))
    assert counter.line_px == ((200.0, 0.0), (600.0, 600.0))


def test_reconfigure_keeps_counts_and_applies_new_thresholds() -> None:
    counter = PeopleCounter(CountingConfig(occupancy_max=5, occupancy_s=0.0, loitering_s=100.0), FRAME)
    walk_feet(counter, 1, vertical_path(300, 400, 600))
    assert (counter.totals.total, counter.totals.in_count) == (1, 1)
    person = track(1, 300, 440)  # stands above the line again
    counter.update(TrackerOutput(ts=5.0, visible=(person,)))
    counter.reconfigure(
        CountingConfig(line=((0.0, 0.7), (1.0, 0.7)), occupancy_max=1, occupancy_s=0.0, loitering_s=10.0)
    )
    assert counter.line_px == ((0.0, 700.0), (1000.0, 700.0))
    other = track(2, 800, 100, first_seen=11.0)
    result = counter.update(TrackerOutput(ts=11.0, visible=(track(1, 300, 560), other)))
    # crossing the old line's place no longer counts; the new thresholds apply at once
    assert result.crossings == ()
    assert sorted(a.type for a in result.alerts) == ["loitering", "occupancy"]
    assert (counter.totals.total, counter.totals.in_count) == (1, 1)
    result = counter.update(TrackerOutput(ts=11.5, visible=(track(1, 300, 760), other)))
    assert [c.direction for c in result.crossings] == ["in"]
