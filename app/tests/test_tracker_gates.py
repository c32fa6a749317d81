"""The tracker's association gates, at the overlaps just either side of each gate."""

from __future__ import annotations

import numpy as np
import pytest

from people_counter.config import TrackerConfig
from people_counter.stage_data import PersonTrack
from people_counter.vision.tracker import PersonTracker, iou_matrix

CFG = TrackerConfig()  # match_iou 0.2, high_score 0.6: the low-score gate (0.5) is the stricter one
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
