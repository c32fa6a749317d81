"""The tracker's association gates, at the overlaps just either side of each gate."""

from __future__ import annotations

import numpy as np
import pytest

from people_counter.config import TrackerConfig
from people_counter.stage_data import PersonTrack
from people_counter.vision.appearance import DESCRIPTOR_SIZE
from people_counter.vision.tracker import PersonTracker, iou_matrix, match_by_iou

CFG = TrackerConfig(max_gap_s=1.5, match_iou=0.2, high_score=0.6)  # the low-score gate (0.5) is the stricter one
HEIGHT = 150.0
WIDTH = 0.4 * HEIGHT


def box(cx: float, score: float) -> list[float]:
    """A person's box (60 x 150 px) with its feet at y = 400."""
    return [cx - WIDTH / 2, 400.0 - HEIGHT, cx + WIDTH / 2, 400.0, score]


def frame(*boxes: list[float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 5)


def confirmed_standing_person(tracker: PersonTracker, cx: float = 300.0) -> float:
    """Five high-score frames of one person standing at cx, at 10 fps; returns the last timestamp."""
    for i in range(5):
        out = tracker.update(frame(box(cx, 0.9)), i / 10)
    assert [t.track_id for t in out.visible] == [1]
    return 0.4


def iou_with_track(track: PersonTrack, detection: list[float]) -> float:
    return float(iou_matrix(np.array([track.box]), np.array([detection[:4]]))[0, 0])


def shifted_for_iou(iou: float) -> float:
    """The sideways shift of a same-size box that overlaps it at `iou`: (W - dx) / (W + dx) = iou."""
    return WIDTH * (1.0 - iou) / (1.0 + iou)


@pytest.mark.parametrize("iou", [0.25, 0.35, 0.45])
def test_a_low_score_box_overlapping_a_track_below_one_half_does_not_extend_it(iou: float) -> None:
    """Low-score boxes are often false positives (a bag, half a neighbour): between the ordinary gate
    (0.2) and the low-score gate (0.5) the track bridges on its prediction instead of taking the box."""
    tracker = PersonTracker(CFG)
    ts = confirmed_standing_person(tracker)
    before = tracker.predict(ts + 0.1).visible[0]
    detection = box(300.0 + shifted_for_iou(iou), 0.4)
    assert CFG.match_iou < iou_with_track(before, detection) < 0.5  # the premise: between the two gates

    out = tracker.update(frame(detection), ts + 0.1)

    (track,) = out.visible
    assert track.track_id == 1
    assert track.missed is True  # bridged: the low-score box did not extend the track
    assert track.box == pytest.approx(before.box, abs=1.0)  # and did not pull the box towards it
    assert not out.confirmed and not out.ended


@pytest.mark.parametrize("iou", [0.55, 0.8])
def test_a_low_score_box_overlapping_a_track_above_one_half_extends_it(iou: float) -> None:
    tracker = PersonTracker(CFG)
    ts = confirmed_standing_person(tracker)
    before = tracker.predict(ts + 0.1).visible[0]
    detection = box(300.0 + shifted_for_iou(iou), 0.4)
    assert iou_with_track(before, detection) > 0.5

    out = tracker.update(frame(detection), ts + 0.1)

    (track,) = out.visible
    assert (track.track_id, track.missed) == (1, False)
    assert (track.box[0] + track.box[2]) / 2 > 300.0  # the box moved towards the detection


def test_the_low_score_gate_never_falls_below_the_configured_one() -> None:
    """match_iou above 0.5 applies to low-score boxes too: a low-score box is never easier to match."""
    strict = TrackerConfig(match_iou=0.7)
    tracker = PersonTracker(strict)
    ts = confirmed_standing_person(tracker)
    before = tracker.predict(ts + 0.1).visible[0]
    detection = box(300.0 + shifted_for_iou(0.6), 0.4)
    assert 0.5 < iou_with_track(before, detection) < strict.match_iou

    (track,) = tracker.update(frame(detection), ts + 0.1).visible
    assert track.missed is True


def test_a_high_score_box_between_the_two_gates_does_extend_the_track() -> None:
    """The 0.5 gate is for low-score boxes only: a high-score box at 0.35 still matches (gate 0.2)."""
    tracker = PersonTracker(CFG)
    ts = confirmed_standing_person(tracker)
    before = tracker.predict(ts + 0.1).visible[0]
    detection = box(300.0 + shifted_for_iou(0.35), 0.9)
    assert CFG.match_iou < iou_with_track(before, detection) < 0.5

    out = tracker.update(frame(detection), ts + 0.1)

    (track,) = out.visible
    assert (track.track_id, track.missed) == (1, False)


# --- the frame's edges: a bridged track predicted entirely out of the frame ends at once ------------

FRAME = (768, 576)


@pytest.mark.parametrize(
    ("outside", "inside"),
    [
        ((768.0, 250.0, 828.0, 400.0), (767.5, 250.0, 827.5, 400.0)),  # right: x1 at the width
        ((-60.0, 250.0, 0.0, 400.0), (-59.5, 250.0, 0.5, 400.0)),  # left: x2 at 0
        ((300.0, 576.0, 360.0, 726.0), (300.0, 575.5, 360.0, 725.5)),  # bottom: y1 at the height
        ((300.0, -150.0, 360.0, 0.0), (300.0, -149.5, 360.0, 0.5)),  # top: y2 at 0
    ],
    ids=["right", "left", "bottom", "top"],
)
def test_a_track_touching_the_frame_from_outside_ends_and_half_a_pixel_in_stays(
    outside: tuple[float, ...], inside: tuple[float, ...]
) -> None:
    """A box standing still (its estimate is exactly its detections) is missed once: touching the
    frame's edge from outside, it is entirely out and ends; half a pixel in, it is bridged."""
    for placed, ends in ((outside, True), (inside, False)):
        tracker = PersonTracker(CFG, frame_size=FRAME)
        for i in range(5):
            tracker.update(frame([*placed, 0.9]), i / 10)
        out = tracker.update(frame(), 0.5)
        assert [e.track_id for e in out.ended] == ([1] if ends else []), placed
        assert [(t.track_id, t.missed) for t in out.visible] == ([] if ends else [(1, True)]), placed


# --- what a detection is: the score gate's edge, degenerate rows, bad shapes ------------------------


def one_hot_look(hue_bin: int) -> np.ndarray:
    """An appearance descriptor with all its weight in one bin: two different bins look nothing alike."""
    return np.eye(1, DESCRIPTOR_SIZE, hue_bin, dtype=np.float32)[0]


def test_a_box_scored_exactly_at_high_score_is_a_high_score_box() -> None:
    """It starts a track (low-score boxes never do) and its look is remembered. (In float64: in
    float32, 0.6 rounds up and would be above the gate.)"""
    tracker = PersonTracker(CFG)
    looks = np.stack([one_hot_look(5)])
    for i in range(3):
        out = tracker.update(np.array([box(300.0, CFG.high_score)]), i / 10, looks)
    assert [t.track_id for t in out.confirmed] == [1]
    tracker.update(np.array([box(300.0, CFG.high_score)]), 0.3, np.stack([one_hot_look(7)]))
    (saved,) = tracker.snapshot()
    assert saved.look is not None and saved.look[5] > saved.look[7] > 0.0  # blended in, not replaced


@pytest.mark.parametrize(
    "bad",
    [
        [300.0, 250.0, 300.0, 400.0, 0.9],  # no width
        [300.0, 400.0, 360.0, 400.0, 0.9],  # no height
        [360.0, 250.0, 300.0, 400.0, 0.9],  # x2 before x1
        [300.0, 400.0, 360.0, 250.0, 0.9],  # y2 above y1
        [300.0, 250.0, 360.0, 400.0, float("nan")],  # no score
        [300.0, float("inf"), 360.0, 400.0, 0.9],
    ],
)
def test_a_degenerate_row_is_dropped_and_the_good_one_beside_it_kept(bad: list[float]) -> None:
    tracker = PersonTracker(TrackerConfig(confirm_hits=1))
    out = tracker.update(np.array([bad, box(100.0, 0.9)], dtype=np.float64), 0.0)
    assert [t.box for t in out.visible] == [pytest.approx(tuple(box(100.0, 0.9)[:4]))]


def test_columns_after_the_score_are_ignored() -> None:
    tracker = PersonTracker(TrackerConfig(confirm_hits=1))
    out = tracker.update(np.array([[*box(100.0, 0.9), float("nan")]]), 0.0)
    assert len(out.visible) == 1


def test_bad_inputs_are_refused_with_their_reason() -> None:
    tracker = PersonTracker(CFG)
    with pytest.raises(ValueError, match=r"^boxes must have shape \(N, 5\), got \(1, 4\)$"):
        tracker.update(np.zeros((1, 4)), 0.0)
    with pytest.raises(ValueError, match=r"^looks must have one row a box: 2 for 1$"):
        tracker.update(frame(box(100.0, 0.9)), 0.0, np.zeros((2, DESCRIPTOR_SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match=r"^timestamp must be finite, got nan$"):
        tracker.update(frame(), float("nan"))
    with pytest.raises(ValueError, match=r"^first_id must be at least 1$"):
        PersonTracker(CFG, first_id=0)


# --- the matching: the gate is inclusive, the look weighs in ------------------------------------------


def test_an_overlap_exactly_at_the_gate_matches() -> None:
    track, detection = np.array([[0.0, 0.0, 2.0, 1.0]]), np.array([[0.0, 0.0, 1.0, 1.0]])
    assert float(iou_matrix(track, detection)[0, 0]) == 0.5
    assert match_by_iou(track, detection, 0.5) == ([(0, 0)], [], [])


def test_the_look_cost_decides_between_equal_overlaps() -> None:
    two = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    crossed = np.array([[0.5, 0.0], [0.0, 0.5]])
    assert match_by_iou(two, two, 0.2, look_cost=crossed)[0] == [(0, 1), (1, 0)]
    assert match_by_iou(two, two, 0.2, look_cost=crossed[::-1].copy())[0] == [(0, 0), (1, 1)]


def test_two_people_who_meet_and_turn_back_are_told_apart_by_their_look() -> None:
    """A walks right, B walks left; they meet and each turns back. The prediction carries each on
    through the other, so overlap alone would swap them; their looks keep each one's id."""
    looks = {"A": one_hot_look(3), "B": one_hot_look(60)}
    tracker = PersonTracker(CFG)
    ids_at_end: dict[str, int] = {}
    for i in range(40):
        step = i if i < 20 else 40 - i  # towards each other for 2 s, then back
        where = {"A": 200.0 + 8.0 * step, "B": 520.0 - 8.0 * step}
        names = ["A", "B"]
        out = tracker.update(frame(*(box(where[n], 0.9) for n in names)), i / 10, np.stack([looks[n] for n in names]))
        if i == 39:
            for n in names:
                ids_at_end[n] = next(t.track_id for t in out.visible if abs((t.box[0] + t.box[2]) / 2 - where[n]) < 20)
    assert ids_at_end == {"A": 1, "B": 2}
