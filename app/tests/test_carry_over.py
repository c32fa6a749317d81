"""The people in view carried across a restart: by the file's own clock, or by the wall clock."""

from __future__ import annotations

import numpy as np
import pytest

from people_counter.carry_over import carry_over, take_snapshot
from people_counter.config import CountingConfig, TrackerConfig
from people_counter.counting.counter import PeopleCounter
from people_counter.vision.tracker import PersonTracker

FRAME = (768, 576)


def standing_person() -> np.ndarray:
    return np.array([[300.0, 200.0, 360.0, 350.0, 0.9]], dtype=np.float32)


def counted_before_the_stop(clock_start: float) -> tuple[PersonTracker, PeopleCounter]:
    tracker, counter = PersonTracker(TrackerConfig(), frame_size=FRAME), PeopleCounter(CountingConfig(), FRAME)
    for i in range(20):
        counter.update(tracker.update(standing_person(), clock_start + i / 10))
    assert counter.totals.total == 1
    return tracker, counter


def restarted(first_id: int, counter: PeopleCounter) -> tuple[PersonTracker, PeopleCounter]:
    return PersonTracker(TrackerConfig(), first_id=first_id, frame_size=FRAME), PeopleCounter(
        CountingConfig(), FRAME, counter.totals
    )


def test_a_file_replayed_from_the_next_frame_carries_on_by_its_own_clock() -> None:
    tracker, counter = counted_before_the_stop(clock_start=5000.0)
    saved = take_snapshot(tracker, counter, clock_ts=5001.9, media_ts=1.9)
    # The new run's clock starts elsewhere (another wall time); the file resumes at 2.0 s.
    tracker2, counter2 = restarted(tracker.next_id, counter)
    assert carry_over(saved, tracker2, counter2, ts=9000.0, media_ts=2.0) is None
    out = tracker2.update(standing_person(), 9000.0)
    counter2.update(out)
    assert [t.track_id for t in out.visible] == [1]
    assert counter2.totals.total == 1  # not counted again
    counter2.update(tracker2.end_all(9001.0))
    assert counter2.totals.dwell_count == 1
    assert counter2.totals.avg_duration_s == pytest.approx(2.0)  # 0.0 .. 2.0 s of the file, across the restart


def test_a_camera_carries_on_by_the_wall_clock_and_a_long_outage_ends_the_visits() -> None:
    tracker, counter = counted_before_the_stop(clock_start=1000.0)
    saved = take_snapshot(tracker, counter, clock_ts=1001.9, media_ts=None)
    tracker2, counter2 = restarted(tracker.next_id, counter)
    carry_over(saved, tracker2, counter2, ts=1003.0, media_ts=None)  # down for 1.1 s
    counter2.update(tracker2.update(standing_person(), 1003.0))
    assert counter2.totals.total == 1

    tracker3, counter3 = restarted(tracker.next_id, counter)
    carry_over(saved, tracker3, counter3, ts=1600.0, media_ts=None)  # down for 10 minutes
    out = tracker3.update(standing_person(), 1600.0)
    counter3.update(out)
    assert [(e.track_id, e.last_seen_ts) for e in out.ended] == [(1, pytest.approx(1001.9))]
    assert counter3.totals.dwell_count == 1


def test_a_snapshot_from_later_in_the_file_ends_its_visits_with_their_own_times() -> None:
    tracker, counter = counted_before_the_stop(clock_start=5000.0)
    saved = take_snapshot(tracker, counter, clock_ts=5001.9, media_ts=1.9)
    tracker2, counter2 = restarted(tracker.next_id, counter)
    ended = carry_over(saved, tracker2, counter2, ts=7000.0, media_ts=0.0)  # the file starts over
    assert ended is not None
    assert [(e.track_id, e.first_seen_ts, e.last_seen_ts) for e in ended.ended] == [(1, 5000.0, pytest.approx(5001.9))]
    counter2.update(ended)
    assert counter2.totals.dwell_count == 1
    assert tracker2.snapshot() == ()
