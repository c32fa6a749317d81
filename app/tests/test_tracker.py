"""The tracker on synthetic box sequences: gaps, occlusion, standing still, comebacks, false positives."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pytest

from people_counter.config import CountingConfig, TrackerConfig
from people_counter.counting.counter import PeopleCounter
from people_counter.stage_data import TrackerOutput, TrackSnapshot
from people_counter.vision.appearance import DESCRIPTOR_SIZE
from people_counter.vision.tracker import BoxKalmanFilter, PersonTracker, iou_matrix, match_by_iou

# The cases' timings and overlaps are written for these values (confirm_hits 3, the rest below),
# not for whatever the defaults are tuned to on the sample video.
SCRIPTED = {"max_gap_s": 1.5, "match_iou": 0.2, "high_score": 0.6}
CFG = TrackerConfig(**SCRIPTED)
NO_REID = TrackerConfig(**SCRIPTED, reid_window_s=0.0, stationary_hold_s=0.0)
"""The gap rules alone: no lost tracks recognised, no longer hold for people standing still."""
NO_BOXES = np.zeros((0, 5), dtype=np.float32)


def person(cx: float, bottom: float, height: float = 150.0, score: float = 0.9) -> list[float]:
    """A person-shaped box (width 0.4 of the height) standing at (cx, bottom)."""
    width = 0.4 * height
    return [cx - width / 2, bottom - height, cx + width / 2, bottom, score]


def frame(*boxes: list[float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 5)


def walk(
    start_cx: float,
    speed_px_s: float,
    seconds: float,
    fps: float,
    missed_frames: Iterable[int] = (),
    bottom: float = 400.0,
) -> list[tuple[float, np.ndarray]]:
    """One person walking sideways at a constant speed; the listed frame indices have no detection."""
    missed = set(missed_frames)
    frames = []
    for i in range(round(seconds * fps)):
        ts = 1000.0 + i / fps
        boxes = NO_BOXES if i in missed else frame(person(start_cx + speed_px_s * (i / fps), bottom))
        frames.append((ts, boxes))
    return frames


def run(tracker: PersonTracker, frames: Iterable[tuple[float, np.ndarray]]) -> list[TrackerOutput]:
    return [tracker.update(boxes, ts) for ts, boxes in frames]


def ids_seen(outputs: Iterable[TrackerOutput]) -> set[int]:
    return {t.track_id for out in outputs for t in out.visible}


def centre_x(box: tuple[float, float, float, float]) -> float:
    return (box[0] + box[2]) / 2


# --- the bug to beat: missed frames must not make a new person ------------------------------------


@pytest.mark.parametrize("fps", [10.0, 25.0])
@pytest.mark.parametrize(
    "missed",
    [[10], [10, 11], [10, 11, 12, 13, 14, 15], [8, 14, 15, 20, 26, 27]],
    ids=["one", "two", "six-in-a-row", "scattered"],
)
def test_walking_person_with_missed_frames_keeps_one_id_and_total_one(fps: float, missed: list[int]) -> None:
    tracker = PersonTracker(CFG)
    counter = PeopleCounter(CountingConfig(), (768, 576))
    outputs = []
    for ts, boxes in walk(100.0, 80.0, 6.0, fps, missed):
        out = tracker.update(boxes, ts)
        counter.update(out)
        outputs.append(out)
    assert ids_seen(outputs) == {1}
    assert counter.totals.total == 1
    assert not any(out.ended for out in outputs)
    # During the gap the person is still in view, bridged on the prediction.
    for i in missed:
        (bridged,) = outputs[i].visible
        assert bridged.missed is True
        expected_cx = 100.0 + 80.0 * (i / fps)
        assert centre_x(bridged.box) == pytest.approx(expected_cx, abs=10.0)
    assert outputs[-1].visible[0].missed is False
    assert counter.count == 1


def test_confirmation_after_confirm_hits_matched_frames() -> None:
    tracker = PersonTracker(CFG)
    outs = run(tracker, walk(100.0, 50.0, 0.5, 10.0))
    assert [len(o.visible) for o in outs] == [0, 0, 1, 1, 1]
    assert [t.track_id for t in outs[2].confirmed] == [1]
    assert outs[2].visible[0].first_seen_ts == pytest.approx(1000.0)
    assert all(not o.confirmed for i, o in enumerate(outs) if i != 2)


def test_confirm_hits_of_one_confirms_on_first_sight() -> None:
    tracker = PersonTracker(TrackerConfig(confirm_hits=1))
    out = tracker.update(frame(person(200, 300)), 5.0)
    assert [t.track_id for t in out.confirmed] == [1]


def test_standing_person_keeps_one_id_through_jitter_and_misses() -> None:
    rng = np.random.default_rng(7)
    tracker = PersonTracker(CFG)
    outputs = []
    for i in range(600):  # a minute at 10 fps
        ts = i / 10
        if i % 17 in (5, 6):  # a two-frame miss now and then
            boxes = NO_BOXES
        else:
            jitter = rng.normal(0.0, 3.0, size=4)
            box = np.array(person(400, 450)[:4]) + jitter
            boxes = frame([*box.tolist(), 0.8])
        outputs.append(tracker.update(boxes, ts))
    assert ids_seen(outputs) == {1}
    final = outputs[-1].visible[0]
    assert centre_x(final.box) == pytest.approx(400.0, abs=8.0)
    assert final.box[3] == pytest.approx(450.0, abs=8.0)


def test_without_reid_a_person_back_after_max_gap_is_a_new_person() -> None:
    tracker = PersonTracker(NO_REID)
    counter = PeopleCounter(CountingConfig(), (768, 576))
    still = frame(person(300, 400))
    outputs = []
    for i in range(60):
        ts = i / 10
        # seen 0.0..1.9 s, gone 2.0..3.9 s (2 s > max_gap_s 1.5), back from 4.0 s
        out = tracker.update(NO_BOXES if 20 <= i < 40 else still, ts)
        counter.update(out)
        outputs.append(out)
    ended = [e for o in outputs for e in o.ended]
    assert len(ended) == 1
    assert ended[0].track_id == 1
    assert ended[0].first_seen_ts == pytest.approx(0.0)
    assert ended[0].last_seen_ts == pytest.approx(1.9)
    ending_frame = next(i for i, o in enumerate(outputs) if o.ended)
    assert outputs[ending_frame].ts == pytest.approx(3.5)  # first frame more than 1.5 s after 1.9
    assert outputs[ending_frame - 1].visible[0].missed is True  # bridged until then
    assert ids_seen(outputs[40:]) == {2}
    assert counter.totals.total == 2
    assert counter.totals.avg_duration_s == pytest.approx(1.9)


def test_gap_just_within_max_gap_is_bridged() -> None:
    tracker = PersonTracker(CFG)
    still = frame(person(300, 400))
    outputs = [tracker.update(NO_BOXES if 10 <= i < 24 else still, i / 10) for i in range(40)]
    # last seen 0.9, back at 2.4: a 1.5 s gap, not more than max_gap_s
    assert ids_seen(outputs) == {1}
    assert not any(o.ended for o in outputs)


@pytest.mark.parametrize("fps", [10.0, 25.0])
def test_gap_rule_is_in_seconds_not_frames(fps: float) -> None:
    def ids_after_gap(gap_s: float) -> set[int]:
        tracker = PersonTracker(NO_REID)
        still = frame(person(300, 400))
        outs = []
        for i in range(round(2 * fps)):
            outs.append(tracker.update(still, i / fps))
        back = 2.0 + gap_s
        for i in range(round(fps)):
            outs.append(tracker.update(still, back + i / fps))
        return ids_seen(outs)

    assert ids_after_gap(1.2) == {1}
    assert ids_after_gap(1.8) == {1, 2}


def test_spurious_one_frame_detection_is_never_confirmed() -> None:
    tracker = PersonTracker(CFG)
    outputs = [tracker.update(frame(person(500, 300)) if i == 3 else NO_BOXES, i / 10) for i in range(20)]
    assert ids_seen(outputs) == set()
    assert not any(o.confirmed or o.ended for o in outputs)
    assert tracker.next_id == 1


@pytest.mark.parametrize(("fps", "every"), [(10.0, 3), (25.0, 8)])
def test_blinking_false_positive_is_never_confirmed(fps: float, every: int) -> None:
    """A false box that shows up for one frame every 0.3 s or so: each sighting dies alone."""
    tracker = PersonTracker(CFG)
    outputs = [
        tracker.update(frame(person(500, 300)) if i % every == 0 else NO_BOXES, i / fps) for i in range(int(5 * fps))
    ]
    assert ids_seen(outputs) == set()
    assert tracker.next_id == 1


def test_newcomer_missed_once_while_tentative_still_confirms_on_the_third_hit() -> None:
    tracker = PersonTracker(CFG)
    outs = run(tracker, walk(100.0, 50.0, 1.0, 10.0, missed_frames=[2]))
    assert [len(o.confirmed) for o in outs[:5]] == [0, 0, 0, 1, 0]
    assert outs[3].confirmed[0].first_seen_ts == pytest.approx(1000.0)
    assert ids_seen(outs) == {1}


def test_low_score_boxes_extend_a_track_but_never_start_one() -> None:
    tracker = PersonTracker(CFG)
    low_only = [tracker.update(frame(person(200, 400, score=0.4)), i / 10) for i in range(10)]
    assert ids_seen(low_only) == set()

    tracker = PersonTracker(CFG)
    outs = []
    for i in range(30):
        score = 0.9 if i < 5 else 0.3  # e.g. the person is partly hidden after 0.5 s
        outs.append(tracker.update(frame(person(200 + 5 * i, 400, score=score)), i / 10))
    assert ids_seen(outs) == {1}
    assert all(not t.missed for o in outs[5:] for t in o.visible)


def test_two_people_crossing_paths_keep_their_ids_through_occlusion() -> None:
    """A walks right, B walks left a little further back; B is hidden behind A while they overlap."""
    rng = np.random.default_rng(3)
    tracker = PersonTracker(CFG)
    fps = 10.0
    hidden_frames = 0
    outputs = []
    truth: list[tuple[float, float]] = []
    for i in range(45):
        t = i / fps
        a_cx = 100.0 + 150.0 * t
        b_cx = 650.0 - 150.0 * t
        truth.append((a_cx, b_cx))
        boxes = [person(a_cx, 420.0, 160.0)]
        if abs(a_cx - b_cx) >= 80.0:
            # B comes back with a low score at first, as a partly hidden person does
            b_score = 0.35 if hidden_frames and abs(a_cx - b_cx) < 120.0 else 0.85
            boxes.append(person(b_cx, 400.0, 140.0, score=b_score))
        else:
            hidden_frames += 1
        noisy = np.array(boxes)
        noisy[:, :4] += rng.normal(0.0, 2.0, size=(len(boxes), 4))
        outputs.append(tracker.update(noisy.astype(np.float32), 1000.0 + t))
    assert hidden_frames >= 5

    first = outputs[5].visible
    id_a = min(first, key=lambda p: abs(centre_x(p.box) - truth[5][0])).track_id
    id_b = min(first, key=lambda p: abs(centre_x(p.box) - truth[5][1])).track_id
    assert id_a != id_b
    for out, (a_cx, b_cx) in zip(outputs[5:], truth[5:], strict=True):
        by_id = {p.track_id: p for p in out.visible}
        assert set(by_id) == {id_a, id_b}
        assert centre_x(by_id[id_a].box) == pytest.approx(a_cx, abs=20.0)
        assert centre_x(by_id[id_b].box) == pytest.approx(b_cx, abs=20.0)
    assert tracker.next_id == 3


def test_ids_start_at_first_id_and_are_never_reused() -> None:
    tracker = PersonTracker(NO_REID, first_id=42)
    still = frame(person(300, 400))
    seen = []
    for i in range(100):
        # present 0-1 s, gone 2 s, present again: two people one after the other
        out = tracker.update(NO_BOXES if 10 <= i < 30 or 45 <= i < 65 else still, i / 10)
        seen.extend(t.track_id for t in out.confirmed)
    assert seen == [42, 43, 44]
    assert tracker.next_id == 45
    with pytest.raises(ValueError):
        PersonTracker(CFG, first_id=0)


def test_end_all_ends_confirmed_tracks_and_drops_tentative_ones() -> None:
    tracker = PersonTracker(CFG)
    for i in range(10):
        boxes = [person(200, 400)]
        if i >= 8:
            boxes.append(person(600, 400))  # seen twice: still tentative
        tracker.update(frame(*boxes), i / 10)
    out = tracker.end_all(1.05)
    assert out.visible == ()
    assert [(e.track_id, e.first_seen_ts, e.last_seen_ts) for e in out.ended] == [(1, 0.0, 0.9)]
    assert tracker.end_all(2.0).ended == ()
    # afterwards a new person gets a new id
    outs = [tracker.update(frame(person(200, 400)), 3.0 + i / 10) for i in range(3)]
    assert ids_seen(outs) == {2}


def test_time_jump_forward_ends_old_tracks() -> None:
    """An input that reconnects after 30 s: the people before are not assumed to be still there."""
    tracker = PersonTracker(CFG)
    still = frame(person(300, 400))
    for i in range(10):
        tracker.update(still, i / 10)
    out = tracker.update(still, 30.0)
    assert [(e.track_id, e.last_seen_ts) for e in out.ended] == [(1, 0.9)]
    assert out.visible == ()
    outs = [tracker.update(still, 30.0 + i / 10) for i in range(1, 4)]
    assert ids_seen(outs) == {2}


def test_time_going_backwards_ends_tracks_with_their_own_times() -> None:
    tracker = PersonTracker(CFG)
    still = frame(person(300, 400))
    for i in range(10):
        tracker.update(still, 100.0 + i / 10)
    out = tracker.update(still, 5.0)
    assert [(e.track_id, e.first_seen_ts, e.last_seen_ts) for e in out.ended] == [(1, 100.0, 100.9)]
    assert all(e.duration_s >= 0 for e in out.ended)
    outs = [tracker.update(still, 5.0 + i / 10) for i in range(1, 4)]
    assert ids_seen(outs) == {2}


def test_bridged_track_ends_once_predicted_out_of_the_frame() -> None:
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    outputs = []
    for i in range(30):
        cx = 600.0 + 20.0 * i  # 200 px/s to the right; detections stop at the edge
        boxes = frame(person(cx, 400)) if cx < 740 else NO_BOXES
        outputs.append(tracker.update(boxes, i / 10))
    end_frame = next(i for i, o in enumerate(outputs) if o.ended)
    # last detected at frame 6 (cx 720); box half-width 30, so wholly out once cx > 798
    assert end_frame == 10
    assert outputs[end_frame].ended[0].last_seen_ts == pytest.approx(0.6)

    # without the frame size the same track is bridged for max_gap_s
    tracker = PersonTracker(NO_REID)
    outputs = [tracker.update(frame(person(600 + 20 * i, 400)) if i <= 6 else NO_BOXES, i / 10) for i in range(30)]
    ended_at = next(o.ts for o in outputs if o.ended)
    assert 2.1 <= ended_at <= 2.2 + 1e-9  # the first frame more than 1.5 s after 0.6


def test_degenerate_and_empty_inputs() -> None:
    tracker = PersonTracker(CFG)
    bad = frame([10, 10, 10, 50, 0.9], [10, 10, 50, 5, 0.9], [float("nan"), 0, 10, 10, 0.9])
    outs = [tracker.update(bad, i / 10) for i in range(5)]
    outs += [tracker.update(np.zeros((0,), dtype=np.float32), 1.0)]
    assert ids_seen(outs) == set()
    with pytest.raises(ValueError):
        tracker.update(np.zeros((3, 4), dtype=np.float32), 2.0)
    with pytest.raises(ValueError):
        tracker.update(NO_BOXES, float("nan"))


def test_random_walks_with_short_dropouts_never_make_more_ids_than_people() -> None:
    """Property: people well apart, each wandering and missing 1-2 frames at random, keep one id each."""
    for seed in range(25):
        rng = np.random.default_rng(seed)
        fps = float(rng.choice([10.0, 25.0]))
        people = int(rng.integers(1, 6))
        lanes = np.linspace(80, 700, people)
        cx = lanes.copy()
        bottom = rng.uniform(250, 550, size=people)
        vel = rng.normal(0.0, 40.0, size=(people, 2))
        dropout_left = np.zeros(people, dtype=int)
        tracker = PersonTracker(CFG)
        outputs = []
        for i in range(int(8 * fps)):
            dt = 1.0 / fps
            vel += rng.normal(0.0, 60.0 * np.sqrt(dt), size=(people, 2))
            vel = np.clip(vel, -60.0, 60.0)
            cx = np.clip(cx + vel[:, 0] * dt, lanes - 40, lanes + 40)  # stay in one's lane
            bottom = np.clip(bottom + vel[:, 1] * dt, 200, 560)
            boxes = []
            for p in range(people):
                if dropout_left[p] == 0 and rng.random() < 0.08:
                    dropout_left[p] = int(rng.integers(1, 3))
                if dropout_left[p] > 0:
                    dropout_left[p] -= 1
                    continue
                box = np.array(person(cx[p], bottom[p], 150.0)) + np.r_[rng.normal(0, 3.0, 4), 0.0]
                boxes.append(box.tolist())
            outputs.append(tracker.update(frame(*boxes), i * dt))
        assert len(ids_seen(outputs)) == people, f"seed {seed}"


# --- the pieces ----------------------------------------------------------------------------------


def test_kalman_prediction_does_not_depend_on_the_step_size() -> None:
    one, two = BoxKalmanFilter(capacity=2), BoxKalmanFilter(capacity=2)
    box = np.array([100.0, 100.0, 140.0, 200.0])
    for f in (one, two):
        slot = f.add(box)
        for k in range(1, 4):
            moved = box + np.array([10.0 * k, 0, 10.0 * k, 0])
            f.predict(0.1)
            f.update(np.array([slot]), moved[None, :])
    one.predict(0.4)
    for _ in range(4):
        two.predict(0.1)
    np.testing.assert_allclose(one.boxes(np.array([0])), two.boxes(np.array([0])), rtol=1e-9)
    np.testing.assert_allclose(one._p_pp, two._p_pp, rtol=1e-9)


def test_kalman_learns_a_constant_velocity() -> None:
    kf = BoxKalmanFilter(capacity=1)
    slot = kf.add(np.array([0.0, 0.0, 40.0, 100.0]))
    for k in range(1, 20):
        kf.predict(0.1)
        kf.update(np.array([slot]), np.array([[5.0 * k, 0.0, 40.0 + 5.0 * k, 100.0]]))
    kf.predict(1.0)  # one second ahead: about 50 px further
    x1 = kf.boxes(np.array([slot]))[0, 0]
    assert x1 == pytest.approx(95.0 + 50.0, abs=3.0)


def test_kalman_filter_grows_and_reuses_slots() -> None:
    kf = BoxKalmanFilter(capacity=2)
    slots = [kf.add(np.array([0.0, 0.0, 10.0, 20.0])) for _ in range(5)]
    assert sorted(slots) == [0, 1, 2, 3, 4]
    assert kf.capacity == 8
    kf.remove(slots[1])
    assert kf.add(np.array([0.0, 0.0, 10.0, 20.0])) == slots[1]
    assert kf.capacity == 8


def test_iou_and_gated_assignment() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [300.0, 300.0, 310.0, 310.0]])
    iou = iou_matrix(a, b)
    assert iou[0, 0] == pytest.approx(50.0 / 150.0)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[1].tolist() == [0.0, 0.0, 0.0]
    pairs, rows, cols = match_by_iou(a, b, 0.2)
    assert pairs == [(0, 1)]
    assert rows == [1]
    assert cols == [0, 2]
    assert match_by_iou(a, np.zeros((0, 4)), 0.2) == ([], [0, 1], [])


def test_reconfigure_keeps_tracks_and_ids() -> None:
    tracker = PersonTracker(CFG)
    still = frame(person(300, 400))
    for i in range(5):
        tracker.update(still, i / 10)
    tracker.reconfigure(TrackerConfig(**{**SCRIPTED, "max_gap_s": 0.3}, reid_window_s=0.0, stationary_hold_s=0.0))
    outs = [tracker.update(still, 0.5)]
    outs += [tracker.update(NO_BOXES, 0.6 + i / 10) for i in range(4)]  # gone for more than 0.3 s
    assert ids_seen(outs) == {1}
    assert [e.track_id for o in outs for e in o.ended] == [1]


def test_person_who_stops_during_a_gap_is_found_where_last_seen() -> None:
    """The prediction walks on through a one-second gap; the person stopped. The last seen box still matches."""
    tracker = PersonTracker(CFG)
    outputs = []
    for i in range(40):
        cx = 200.0 + 20.0 * min(i, 10)  # 200 px/s, then stands still from frame 10 on
        boxes = NO_BOXES if 11 <= i < 21 else frame(person(cx, 400, 100.0))
        outputs.append(tracker.update(boxes, i / 10))
    assert ids_seen(outputs) == {1}


def test_small_far_person_turning_during_a_gap_keeps_one_id() -> None:
    """A 16 px wide person far away: a few pixels of prediction error leave no plain overlap at all."""
    tracker = PersonTracker(CFG)
    outputs = []
    for i in range(50):
        t = i / 10
        cx = 300.0 + 15.0 * t if t < 2.0 else 330.0 - 15.0 * (t - 2.0)  # walks right, then back left
        # unseen from the turn at 2.0 s to 3.0 s: then 13.5 px from where last seen, 30 px from the prediction
        boxes = NO_BOXES if 20 <= i < 30 else frame(person(cx, 100.0, 40.0))
        outputs.append(tracker.update(boxes, t))
    assert ids_seen(outputs) == {1}


def test_neighbour_is_not_taken_over_by_a_bridged_track() -> None:
    """Two people side by side; one is hidden for a while. The visible one keeps their own id."""
    tracker = PersonTracker(CFG)
    outputs = []
    for i in range(40):
        boxes = [person(300, 400)]
        if i < 10 or i >= 20:
            boxes.append(person(370, 400))  # 10 px gap between the boxes
        outputs.append(tracker.update(frame(*boxes), i / 10))
    ids_at_start = {round(centre_x(p.box)): p.track_id for p in outputs[5].visible}
    assert ids_at_start == {300: 1, 370: 2}
    for out in outputs[10:20]:
        by_id = {p.track_id: p for p in out.visible}
        assert by_id[1].missed is False
        assert by_id[2].missed is True
    assert {round(centre_x(p.box)): p.track_id for p in outputs[-1].visible} == {300: 1, 370: 2}


def test_box_size_is_not_extrapolated_over_a_gap() -> None:
    kf = BoxKalmanFilter(capacity=1)
    slot = kf.add(np.array([0.0, 0.0, 40.0, 100.0]))
    for k in range(1, 6):  # the box grows 10% a frame, as jittery detections can
        kf.predict(0.1)
        kf.update(np.array([slot]), np.array([[0.0, 0.0, 40.0 * 1.1**k, 100.0 * 1.1**k]]))
    height_before = float(np.diff(kf.boxes(np.array([slot]))[0, 1::2])[0])
    kf.predict(1.5)
    height_after = float(np.diff(kf.boxes(np.array([slot]))[0, 1::2])[0])
    assert height_after == pytest.approx(height_before)


# --- identities that survive long gaps: lost tracks recognised, people standing still held ----------


def look(hue_bin: int) -> np.ndarray:
    """An appearance descriptor with all its weight in one bin: two different bins look nothing alike."""
    vector = np.zeros(DESCRIPTOR_SIZE, dtype=np.float32)
    vector[hue_bin] = 1.0
    return vector


def test_person_hidden_for_three_seconds_behind_a_post_keeps_one_id_and_is_counted_once() -> None:
    """Walking at 100 px/s, hidden from 2 s to 5 s, seen again 300 px further on where they were heading."""
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    counter = PeopleCounter(CountingConfig(), (768, 576))
    outputs = []
    for i in range(80):
        boxes = NO_BOXES if 20 <= i < 50 else frame(person(100.0 + 10.0 * i, 400, 120.0))
        out = tracker.update(boxes, i / 10, np.repeat(look(3)[None], len(boxes), axis=0))
        counter.update(out)
        outputs.append(out)
    assert all(not o.visible for o in outputs[40:50])  # out of the count in view while hidden
    assert ids_seen(outputs) == {1}
    counter.update(tracker.end_all(8.0))
    assert counter.totals.total == 1
    assert counter.totals.dwell_count == 1
    assert counter.totals.avg_duration_s == pytest.approx(7.9)  # the whole visit, gap included


def test_someone_else_appearing_where_a_person_was_lost_is_a_new_person() -> None:
    """Same place, same size, but another look: not the lost person."""
    tracker = PersonTracker(CFG)
    still = frame(person(300, 400))
    seen = []
    for i in range(60):
        who = look(3) if i < 20 else look(40)
        out = tracker.update(NO_BOXES if 20 <= i < 40 else still, i / 10, who[None])
        seen.extend(t.track_id for t in out.confirmed)
    assert seen == [1, 2]


def test_a_lost_person_is_not_recognised_far_from_where_they_could_be() -> None:
    tracker = PersonTracker(CFG)
    seen = []
    for i in range(60):
        cx = 150.0 if i < 20 else 650.0  # 500 px (3.3 heights) away after 2 s: more than a walk
        out = tracker.update(NO_BOXES if 20 <= i < 40 else frame(person(cx, 400)), i / 10)
        seen.extend(t.track_id for t in out.confirmed)
    assert seen == [1, 2]


def test_a_lost_person_ends_after_the_reid_window_with_their_own_times() -> None:
    tracker = PersonTracker(CFG)
    outputs = [tracker.update(frame(person(200 + 20 * i, 400)) if i < 10 else NO_BOXES, i / 10) for i in range(200)]
    ended = [(o.ts, e) for o in outputs for e in o.ended]
    assert len(ended) == 1
    ts, track = ended[0]
    assert track.last_seen_ts == pytest.approx(0.9)
    assert ts == pytest.approx(0.9 + CFG.reid_window_s + 0.1)  # the first frame past the window


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_person_standing_still_with_flickering_detections_stays_in_view_and_is_counted_once(seed: int) -> None:
    """Walks in, stands 25 s with their back turned, detected on a third of the frames with gaps of
    up to 8 s, walks out: one person, in view on nearly every frame, with the right visit length."""
    rng = np.random.default_rng(seed)
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    counter = PeopleCounter(CountingConfig(), (768, 576))
    fps, present, in_view = 10.0, 0, 0
    gap_until = -1
    for i in range(400):
        ts = i / fps
        if i < 30:
            cx, seen = 100.0 + 10.0 * i, True  # walks in
        elif i < 280:
            cx = 400.0 + rng.normal(0.0, 2.0)
            if i > gap_until + 10 and rng.random() < 0.02:
                gap_until = i + int(rng.integers(20, 80))  # long misses: 2 to 8 s, at least 1 s apart
            seen = i > gap_until and rng.random() < 0.5
        elif i < 320:
            cx, seen = 400.0 + 10.0 * (i - 280), True  # walks out
        else:
            cx, seen = 2000.0, False
        boxes = frame(person(cx, 450, 160.0)) if seen and cx < 740 else NO_BOXES
        out = tracker.update(boxes, ts)
        counter.update(out)
        if 3 <= i < 314:  # from confirmation to the last detection
            present += 1
            in_view += len(out.visible) == 1
    counter.update(tracker.end_all(40.0))
    assert counter.totals.total == 1
    assert in_view / present >= 0.95
    assert counter.totals.avg_duration_s == pytest.approx(31.0, rel=0.2)


def test_snapshot_and_restore_carry_people_in_view_across_a_restart_without_counting_them_again() -> None:
    walker = [frame(person(100.0 + 10.0 * i, 400)) for i in range(60)]
    before = PersonTracker(CFG)
    counter = PeopleCounter(CountingConfig(), (768, 576))
    for i in range(30):
        counter.update(before.update(walker[i], i / 10, look(5)[None]))
    assert counter.totals.total == 1
    saved = before.snapshot()
    assert [(s.track_id, s.lost) for s in saved] == [(1, False)]

    # The restarted counter's clock is 500 s later; the walker is 0.5 s further on.
    after = PersonTracker(CFG, first_id=before.next_id)
    after.restore(saved, shift_s=500.0, clock_ts=502.9)
    outputs = [after.update(walker[i], 500.0 + i / 10, look(5)[None]) for i in range(35, 60)]
    for out in outputs:
        counter.update(out)
    assert ids_seen(outputs) == {1}
    assert counter.totals.total == 1  # not counted again
    end = after.end_all(507.0)
    assert end.ended[0].first_seen_ts == pytest.approx(500.0)  # the visit keeps its start
    assert after.next_id == 2


def test_restored_track_not_seen_again_ends_once_with_its_times() -> None:
    before = PersonTracker(CFG)
    for i in range(20):
        before.update(frame(person(300.0, 400)), i / 10)
    after = PersonTracker(CFG)
    after.restore(before.snapshot(), shift_s=100.0, clock_ts=101.9)
    outputs = [after.update(NO_BOXES, 102.0 + i / 10) for i in range(200)]
    ended = [e for o in outputs for e in o.ended]
    assert [(e.track_id, e.first_seen_ts, e.last_seen_ts) for e in ended] == [(1, 100.0, pytest.approx(101.9))]
    assert all(not o.confirmed for o in outputs)


def test_snapshot_restore_snapshot_is_the_same_state_moved_by_the_shift() -> None:
    """Everything a snapshot holds comes back: ids, times, boxes, velocities, hits, looks, the
    standing-still spot, and which tracks are lost; only the times move, by the shift."""
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    for i in range(40):
        boxes = [person(100.0 + 10.0 * i, 400), person(600.0, 300, 120.0)]  # a walker, a person standing
        if i < 10:
            boxes.append(person(300.0, 500, 100.0))  # seen, then gone: lost by the end
        looks = np.stack([look(2), look(9), look(20)][: len(boxes)])
        tracker.update(frame(*boxes), i / 10, looks)
    saved = tracker.snapshot()
    assert sorted((s.track_id, s.lost) for s in saved) == [(1, False), (2, False), (3, True)]
    standing = next(s for s in saved if s.track_id == 2)
    assert standing.still_at is not None and standing.still_since_ts is not None
    assert standing.hits == 40 and standing.look is not None

    again = PersonTracker(CFG, frame_size=(768, 576))
    again.restore(saved, shift_s=100.0, clock_ts=103.9)
    assert again.next_id == 4

    def moved(s: TrackSnapshot) -> TrackSnapshot:
        return dataclasses.replace(
            s,
            first_seen_ts=s.first_seen_ts + 100.0,
            last_seen_ts=s.last_seen_ts + 100.0,
            still_since_ts=None if s.still_since_ts is None else s.still_since_ts + 100.0,
        )

    resaved = {s.track_id: s for s in again.snapshot()}
    for s in saved:
        expected, got = moved(s), resaved[s.track_id]
        assert got.box == pytest.approx(expected.box) and got.velocity == pytest.approx(expected.velocity)
        assert dataclasses.replace(got, box=expected.box, velocity=expected.velocity) == expected


# --- the filter against a textbook one, and the state a restart carries ------------------------------


class TextbookFilter:
    """The filter the tracker's docs describe, written out the usual way for one box: for each of
    cx, cy, w, h a state (position, velocity) with F = [[1, dt], [0, 1]]; the centre under white
    acceleration noise of 1 height/s², the size a random walk of 0.15 height/sqrt(s) with no
    velocity; detector noise 5% of the height; a new box has no velocity, give or take 1 height/s."""

    MEASUREMENT = (0.05, 0.05, 0.05, 0.05)
    ACCELERATION = (1.0, 1.0, 0.0, 0.0)
    INITIAL_VELOCITY = (1.0, 1.0, 0.0, 0.0)
    SIZE_DRIFT = (0.0, 0.0, 0.15, 0.15)

    def __init__(self, box: np.ndarray) -> None:
        z = self._cxcywh(box)
        height = max(z[3], 1.0)
        self.x = [np.array([z[i], 0.0]) for i in range(4)]
        self.p = [
            np.diag([(self.MEASUREMENT[i] * height) ** 2, (self.INITIAL_VELOCITY[i] * height) ** 2]) for i in range(4)
        ]

    @staticmethod
    def _cxcywh(box: np.ndarray) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in box)
        return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]

    def predict(self, dt: float) -> None:
        height = max(self.x[3][0], 1.0)
        f = np.array([[1.0, dt], [0.0, 1.0]])
        for i in range(4):
            q = (self.ACCELERATION[i] * height) ** 2
            noise = q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
            noise[0, 0] += (self.SIZE_DRIFT[i] * height) ** 2 * dt
            self.x[i] = f @ self.x[i]
            self.p[i] = f @ self.p[i] @ f.T + noise
        for i in (2, 3):  # a box never shrinks below a pixel
            self.x[i][0] = max(self.x[i][0], 1.0)

    def update(self, box: np.ndarray) -> None:
        z = self._cxcywh(box)
        height = max(self.x[3][0], 1.0)
        h = np.array([[1.0, 0.0]])
        for i in range(4):
            s = float((h @ self.p[i] @ h.T)[0, 0]) + (self.MEASUREMENT[i] * height) ** 2
            k = (self.p[i] @ h.T / s).ravel()
            self.x[i] = self.x[i] + k * (z[i] - self.x[i][0])
            self.p[i] = (np.eye(2) - np.outer(k, h)) @ self.p[i]

    def box(self, ahead_s: float = 0.0) -> list[float]:
        cx, cy, w, h = (self.x[i][0] + self.x[i][1] * ahead_s for i in range(4))
        return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_kalman_filter_is_the_textbook_filter_for_each_box() -> None:
    """Two boxes at once, uneven steps, missed updates and a slot freed and reused: every estimate
    and every look ahead is the textbook filter's."""
    rng = np.random.default_rng(7)
    kf = BoxKalmanFilter(capacity=2)
    starts = [np.array([100.0, 80.0, 160.0, 230.0]), np.array([500.0, 300.0, 520.0, 350.0])]
    slots = [kf.add(b) for b in starts]
    spare = kf.add(np.array([0.0, 0.0, 30.0, 60.0]))  # grows the filter; freed below
    refs = [TextbookFilter(b) for b in starts]
    truth = [b.copy() for b in starts]
    kf.remove(spare)
    for step in range(40):
        dt = float(rng.uniform(0.04, 0.4))
        kf.predict(dt)
        for ref in refs:
            ref.predict(dt)
        for k, (slot, ref) in enumerate(zip(slots, refs, strict=True)):
            truth[k] = truth[k] + np.array([30.0, -5.0, 30.0, -5.0]) * dt * (1 if k == 0 else -1)
            if step % 7 != 3:  # now and then no detection: the prediction stands
                seen = truth[k] + rng.normal(0.0, 3.0, 4)
                kf.update(np.array([slot]), seen[None, :])
                ref.update(seen)
            np.testing.assert_allclose(kf.boxes(np.array([slot]))[0], ref.box(), rtol=1e-9, atol=1e-6)
            ahead = _cxcywh_box(kf.predicted_state(0.3)[slot])
            np.testing.assert_allclose(ahead, ref.box(0.3), rtol=1e-9, atol=1e-6)


def _cxcywh_box(state: np.ndarray) -> list[float]:
    cx, cy, w, h = (float(v) for v in state)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_a_freed_slot_is_a_zero_box_and_stays_one() -> None:
    kf = BoxKalmanFilter(capacity=2)
    moving = kf.add(np.array([100.0, 100.0, 140.0, 200.0]))
    freed = kf.add(np.array([300.0, 100.0, 340.0, 200.0]))
    for k in range(1, 5):
        kf.predict(0.1)
        kf.update(np.array([moving, freed]), np.array([[100.0 + 8 * k, 100.0, 140.0 + 8 * k, 200.0]] * 2))
    kf.remove(freed)
    kf.predict(1.0)
    assert kf.all_boxes()[freed].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert kf.all_observed()[freed].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert kf.all_boxes()[moving][0] > 100.0 + 8 * 4  # the one in use went on moving


def walker_and_standing() -> PersonTracker:
    """A walker at 100 px/s to the right (id 1) and a person standing at x 600 (id 2), 4 s at 10 fps."""
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    for i in range(40):
        boxes = frame(person(100.0 + 10.0 * i, 400), person(600.0, 300, 120.0))
        tracker.update(boxes, i / 10, np.stack([look(2), look(9)]))
    return tracker


def test_a_snapshot_holds_the_last_detection_the_pace_and_the_look() -> None:
    tracker = walker_and_standing()
    tracker.update(frame(person(600.0, 300, 120.0), [0.0, 0.0, 10.0, 10.0, 0.9]), 4.0)  # a newcomer, tentative
    saved = {s.track_id: s for s in tracker.snapshot()}
    assert sorted(saved) == [1, 2]  # the tentative box is no one yet
    walker, standing = saved[1], saved[2]
    assert walker.box == pytest.approx(tuple(person(490.0, 400)[:4]))  # its last detection, at 3.9 s
    assert walker.velocity == pytest.approx((100.0, 0.0), abs=5.0)
    assert walker.look == pytest.approx(tuple(look(2)))
    assert (walker.hits, walker.lost) == (40, False)
    assert standing.box == pytest.approx(tuple(person(600.0, 300, 120.0)[:4]))
    assert standing.velocity == pytest.approx((0.0, 0.0), abs=1e-9)
    assert standing.still_at == pytest.approx((600.0, 240.0))
    assert standing.still_since_ts == pytest.approx(0.0)


def test_a_tentative_track_before_a_confirmed_one_does_not_hide_it_from_the_snapshot() -> None:
    """Two boxes appear together; the first is not seen again and stays tentative (one hit, within
    its 0.25 s grace) while the second is confirmed on its third frame: the second is saved."""
    tracker = PersonTracker(CFG)
    tracker.update(frame(person(100.0, 400), person(500.0, 400)), 0.0)
    tracker.update(frame(person(500.0, 400)), 0.1)
    out = tracker.update(frame(person(500.0, 400)), 0.2)
    assert [t.track_id for t in out.confirmed] == [1]
    assert [s.track_id for s in tracker.snapshot()] == [1]


def test_a_lost_track_is_saved_with_where_and_how_it_was_last_seen() -> None:
    tracker = PersonTracker(CFG)
    for i in range(20):
        tracker.update(frame(person(200.0 + 10.0 * i, 400)), i / 10, look(4)[None])
    for i in range(20, 40):  # gone for 2 s: lost (beyond max_gap_s), still recognisable
        tracker.update(NO_BOXES, i / 10)
    (saved,) = tracker.snapshot()
    assert (saved.track_id, saved.lost, saved.hits) == (1, True, 0)
    assert saved.box == pytest.approx(tuple(person(390.0, 400)[:4]))
    assert saved.velocity == pytest.approx((100.0, 0.0), abs=5.0)
    assert saved.look == pytest.approx(tuple(look(4)))
    assert (saved.first_seen_ts, saved.last_seen_ts) == (0.0, pytest.approx(1.9))


def test_a_snapshot_without_look_or_still_spot_comes_back_without_them() -> None:
    """What a restored track never had (no look, no standing-still spot) it does not gain."""
    plain = [
        TrackSnapshot(1, 10.0, 12.0, (100.0, 250.0, 160.0, 400.0), (50.0, 0.0), 12, lost=False),
        TrackSnapshot(2, 11.0, 11.5, (400.0, 250.0, 460.0, 400.0), (0.0, 0.0), 0, lost=True),
    ]
    tracker = PersonTracker(CFG)
    tracker.restore(plain, shift_s=0.0, clock_ts=12.0)
    again = {s.track_id: s for s in tracker.snapshot()}
    for s in plain:
        assert (again[s.track_id].look, again[s.track_id].still_at, again[s.track_id].still_since_ts) == (None,) * 3


def test_a_restored_track_is_bridged_and_predicted_from_when_it_was_saved() -> None:
    """Restored at the clock of its save, it is shown as bridged, moving at its saved pace."""
    saved = TrackSnapshot(1, 10.0, 12.0, (100.0, 250.0, 160.0, 400.0), (50.0, -20.0), 12, lost=False)
    tracker = PersonTracker(CFG)
    tracker.restore([saved], shift_s=0.0, clock_ts=12.0)
    out = tracker.predict(12.5)
    (track,) = out.visible
    assert out.ts == 12.5
    assert track.missed is True
    assert track.box == pytest.approx((125.0, 240.0, 185.0, 390.0))  # 0.5 s at (50, -20) px/s
    assert tracker.predict(12.0).visible[0].box == pytest.approx(saved.box)


def test_restoring_into_a_running_tracker_keeps_its_clock() -> None:
    """Tracks restored from an older save do not turn the running tracker's clock back: the walker
    it follows goes on matching on the next frame."""
    tracker = PersonTracker(CFG)
    for i in range(30):
        tracker.update(frame(person(100.0 + 10.0 * i, 400)), 20.0 + i / 10)
    old = TrackSnapshot(7, 5.0, 9.0, (600.0, 100.0, 640.0, 200.0), (0.0, 0.0), 10, lost=True)
    tracker.restore([old], shift_s=0.0, clock_ts=9.0)
    out = tracker.update(frame(person(400.0, 400)), 23.0)
    assert [(t.track_id, t.missed) for t in out.visible] == [(1, False)]
    assert tracker.next_id == 8


def test_predict_before_any_frame_or_at_the_last_one_moves_nothing() -> None:
    tracker = PersonTracker(CFG)
    empty = tracker.predict(5.0)
    assert (empty.ts, empty.visible) == (5.0, ())
    for i in range(10):
        tracker.update(frame(person(100.0 + 10.0 * i, 400)), i / 10)
    now = tracker.predict(0.9)
    assert now.ts == 0.9
    ahead = tracker.predict(1.4)
    assert ahead.ts == 1.4
    assert centre_x(ahead.visible[0].box) - centre_x(now.visible[0].box) == pytest.approx(50.0, abs=5.0)
    earlier = tracker.predict(0.5)  # before the last frame: the current estimate, not extrapolated back
    assert earlier.visible[0].box == pytest.approx(now.visible[0].box)
    assert tracker.end_all(2.0).ts == 2.0


# --- a newcomer who is a bridged person ----------------------------------------------------------


def _turn_back_during_a_gap(who_comes_back: np.ndarray) -> tuple[list[TrackerOutput], PeopleCounter]:
    """Walking right at 50 px/s for 2 s, undetected for 0.5 s, then seen 60 px left of where they
    were last detected: they turned back. Their prediction is 85 px to the right by then, and
    neither it nor the last detected box overlaps the new box at `match_iou` even buffered, so the
    new box starts a new track; it confirms 0.2 s later, 0.7 s into the gap, while the person's
    own track is still bridged (max_gap_s 1.5)."""
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    counter = PeopleCounter(CountingConfig(), (768, 576))
    outputs = []
    last_cx = 300.0 + 50.0 * 1.9
    for i in range(40):
        ts = i / 10
        if i < 20:
            boxes, looks = frame(person(300.0 + 50.0 * ts, 400, 100.0)), look(3)[None]
        elif i < 25:
            boxes, looks = NO_BOXES, None
        else:
            boxes, looks = frame(person(last_cx - 60.0 - 10.0 * (ts - 2.5), 400, 100.0)), who_comes_back[None]
        out = tracker.update(boxes, ts, looks)
        counter.update(out)
        outputs.append(out)
    counter.update(tracker.end_all(4.0))
    return outputs, counter


def test_a_person_who_turns_back_during_a_gap_keeps_their_id_and_is_counted_once() -> None:
    outputs, counter = _turn_back_during_a_gap(look(3))
    assert ids_seen(outputs) == {1}
    assert [len(o.visible) for o in outputs[27:]] == [1] * 13  # never two boxes for one person
    assert not [e for o in outputs[:-1] for e in o.ended]  # the bridged track was taken over, not ended
    assert counter.totals.total == 1
    assert counter.totals.dwell_count == 1
    assert counter.totals.avg_duration_s == pytest.approx(3.9)  # from their first detection to the last


def test_someone_else_near_a_bridged_person_is_a_new_person() -> None:
    outputs, counter = _turn_back_during_a_gap(look(40))
    assert ids_seen(outputs) == {1, 2}
    assert counter.totals.total == 2


def test_a_newcomer_beside_a_person_in_view_who_looks_the_same_is_a_second_person() -> None:
    """Only a bridged track may be taken over: one detected on this frame is someone else's."""
    tracker = PersonTracker(CFG)
    outputs = []
    for i in range(20):
        boxes = [person(200.0 + 10.0 * i, 400, 100.0)]
        if i >= 10:
            boxes.append(person(260.0 + 10.0 * i, 400, 100.0))  # 60 px to the right, the same look
        outputs.append(tracker.update(frame(*boxes), i / 10, np.repeat(look(3)[None], len(boxes), axis=0)))
    assert ids_seen(outputs) == {1, 2}
    assert sorted(t.track_id for t in outputs[-1].visible) == [1, 2]


def test_a_bridged_person_is_recognised_beside_a_lost_one_and_a_newcomer() -> None:
    """One frame confirms a newcomer far from anyone (first) and the person who turned back during
    a gap (second), while another person is lost elsewhere: each is judged on their own."""
    tracker = PersonTracker(CFG, frame_size=(768, 576))
    first_ids: dict[str, int] = {}
    final: TrackerOutput | None = None
    for i in range(32):
        ts = i / 10
        boxes, looks = [], []
        if i >= 25:  # the newcomer, first in the frame's boxes, bottom left
            boxes.append(person(100.0, 560, 100.0))
            looks.append(look(20))
        if i < 20:
            boxes.append(person(300.0 + 50.0 * ts, 400, 100.0))
            looks.append(look(3))
        elif i >= 25:
            boxes.append(person(300.0 + 50.0 * 1.9 - 60.0 - 10.0 * (ts - 2.5), 400, 100.0))
            looks.append(look(3))
        if i < 5:  # seen for half a second at the top right, then lost (gone over max_gap_s)
            boxes.append(person(650.0, 200, 80.0))
            looks.append(look(10))
        final = tracker.update(frame(*boxes) if boxes else NO_BOXES, ts, np.stack(looks) if looks else None)
        for track in final.visible:
            where = "walker" if 300 < track.box[3] < 500 else "lost" if track.box[3] <= 300 else "newcomer"
            first_ids.setdefault(where, track.track_id)
    assert final is not None
    by_place = {("walker" if 300 < t.box[3] < 500 else "newcomer"): t.track_id for t in final.visible}
    assert by_place == {"walker": first_ids["walker"], "newcomer": tracker.next_id - 1}
    assert len(final.visible) == 2
    assert tracker.next_id == 4  # the walker, the lost person and the newcomer
