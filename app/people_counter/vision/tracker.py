"""Multi-person tracker: ByteTrack-style two-stage association over per-track Kalman filters.

Each frame's detections are split by score. High-score boxes are matched first to every confirmed
track (including those coasting over a gap), then the low-score boxes are offered to the confirmed
tracks still unmatched: a partly hidden person often comes back with a low score, and letting that
box extend their track (but never start one) is what keeps ids through occlusions. The leftover
high-score boxes then go to tentative tracks, and what still remains starts new tentative tracks.
Matching is an optimal assignment (Hungarian, scipy) on 1 - IoU between each track's predicted box
and the detections, gated at `TrackerConfig.match_iou`. A track bridging a gap may also match by the
box where it was last detected (OC-SORT's observation-centric recovery), and with boxes buffered by
`BRIDGED_BUFFER` (C-BIoU), because its prediction grows less reliable the longer the gap.

Everything is driven by the frame timestamps, not by frame counts: the filter predicts over the real
elapsed time and gaps are measured in seconds, so 10 fps and 25 fps behave alike and a dropped or
late frame does not age a track faster.

Life cycle:
  * tentative: born from an unmatched high-score box; it has no id and is never reported. It dies
    when unmatched for more than `TENTATIVE_MAX_GAP_S` (or `max_gap_s` if smaller), so a one-frame
    false positive, or one that blinks now and then, never counts. The short grace exists because
    the detector misses real people often (a third of them in the sample video): with no grace at
    all a single miss would restart a newcomer's confirmation, and some would never be counted.
  * confirmed: after `confirm_hits` matched frames. Only now does it get an id, so ids are not
    burnt by false positives and stay monotonic in confirmation order, never reused.
  * bridged: a confirmed track that is unmatched keeps its predicted box (`missed=True`) for up to
    `max_gap_s` seconds after its last detection. This is the fix for the original app's double
    counting: a person missed for a frame or two keeps their id. A new track confirmed near where a
    bridged one is expected, and looking alike, is that person (see `_confirm_or_recognise`): after
    two people cross, the one who reappears often misses their own drifting prediction.
  * standing still: a bridged track whose detections stayed within `STILL_RADIUS_H` heights of one
    spot is held in view `STILL_HOLD_FACTOR` times as long as it has stood there (up to
    `stationary_hold_s`), when that is longer than `max_gap_s`: a person standing still with their
    back turned is often not detected for many seconds, and is still there.
  * lost: a confirmed track unmatched for longer than its hold leaves the count in view, but keeps
    its id for `reid_window_s`. When a new track is confirmed, it is first compared with the lost
    ones and the bridged ones (where each would be by now, its size and its look, see appearance.py); if it is
    one of them, it takes that id and its first-seen time and is not counted again. This is what
    keeps one id for a person hidden by the lamp post or missed by the detector for a few seconds.
  * ended: lost for longer than `reid_window_s`, or (when the frame size is known) bridged while
    predicted entirely out of the frame, or at `end_all`. An ended track's times are those of its
    last detection, so the delay of the lost state does not lengthen its visit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]  # scipy ships no stubs

from people_counter.config import TrackerConfig
from people_counter.stage_data import BoxArray, EndedTrack, PersonTrack, TrackerOutput, TrackSnapshot
from people_counter.vision import appearance
from people_counter.vision.appearance import DescriptorArray
from people_counter.vision.boxes import iou_matrix

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Noise of the filter, per state component (cx, cy, w, h), as fractions of the box height: a
# person's box, its jitter and how fast it can change all scale with how far they are from the
# camera, so one set of numbers serves people near and far.
_MEASUREMENT_STD = np.array([0.05, 0.05, 0.05, 0.05])
"""Detector jitter, about 5% of the height (ByteTrack uses the same 1/20)."""
_ACCELERATION_STD = np.array([1.0, 1.0, 0.0, 0.0])
"""Of the centre, per second squared: walkers start, stop and turn."""
_INITIAL_VELOCITY_STD = np.array([1.0, 1.0, 0.0, 0.0])
"""Of the centre, per second, for a new track: a walker does about 0.8 heights a second."""
_SIZE_DRIFT_STD = np.array([0.0, 0.0, 0.15, 0.15])
"""Of the size, per square root of a second. The size has no velocity: it is a random walk. Box
sizes from the detector jump from frame to frame (legs apart, a half-hidden body), and a size
velocity estimated from them, extrapolated over a one-second gap, shrank boxes to a few pixels or
grew them by half on the sample video, so that the person no longer matched when seen again."""

_LOW_SCORE_MATCH_IOU = 0.5
"""Gate of the second stage. Low-score boxes are often false positives, so they may only extend a
track they overlap well; a weaker overlap leaves the track bridging on its prediction instead."""

BRIDGED_BUFFER = 0.3
"""A bridged track is matched with buffered boxes (C-BIoU): its prediction, its last detected box
and the detections are all enlarged by this fraction of their size on each side before the IoU.
Where a person is during a gap grows less certain with time, and a small far-away box loses all
overlap after a few pixels of error (on the sample video, people 17 px wide were lost this way and
counted twice). Tracks seen on the previous frame keep the plain IoU, so neighbours are not merged."""

TENTATIVE_MAX_GAP_S = 0.25
TENTATIVE_MAX_GAP_FRAMES = 1.5
"""...or this many detected frames, when detection runs slower than 6 frames a second (a detection
rate below the camera's): a newcomer must be able to miss one detected frame and still confirm."""
"""How long a not yet confirmed track may go undetected: one missed frame at 10 fps, five at 25 fps."""

STILL_RADIUS_H = 0.15
"""A track whose detections stay within this many heights of one spot is standing still there."""
STILL_HOLD_FACTOR = 4.0
STILL_MIN_S = 1.0
"""Standing still counts from this long on the spot: a slow walker far away moves less than the
radius in a fraction of a second, and would otherwise be held on a spot they are leaving."""
"""A track standing still is held in view this many times as long as it has stood (up to the
config's `stationary_hold_s`): someone who has stood for 10 s is most likely still standing, while
a far-away walker who seemed still for a second is not, and would be held as a ghost."""

_REID_APPEARANCE_MAX = 0.35
"""Largest appearance distance at which a new track may be a lost one (1 - Bhattacharyya coefficient)."""
_REID_RADIUS_H = 0.75
"""How far (in heights) from where a lost track was expected a new one may be, plus `_REID_SPREAD_H`
a second of absence: a person hidden for a while may have stopped, turned or walked on."""
_REID_SPREAD_H = 0.8
_REID_EXTRAPOLATE_S = 2.0
"""A lost track's last velocity is followed this long at most; after that it is assumed to have stopped."""
_REID_SIZE_RATIO = 1.5
"""Largest ratio of heights between a lost track and a new one that may be the same person."""
LOOK_WEIGHT = 0.5
"""Weight of the appearance distance beside 1 - IoU in the first association stage."""
_REVIVE_IOU = 0.5
"""Overlap with the box where a lost track was last detected at which a detection takes it up again
without waiting for `confirm_hits`: same place, same size, the person never left."""
_APPEARANCE_MEMORY = 0.8
"""Share of a track's appearance kept at each high-score detection (an exponential average)."""

_GATED_COST = 1e6
_MIN_SIZE_PX = 1.0


class BoxKalmanFilter:
    """Kalman filter over many boxes at once: the centre at constant velocity, the size a random walk.

    With diagonal noise the four coordinates (cx, cy, w, h) never interact, so the usual 8x8 filter
    splits exactly into four independent 2x2 ones (position, velocity). Each 2x2 covariance is three
    numbers; they are kept as (capacity, 4) arrays and every step is a few element-wise numpy
    operations for all tracks together. Rows are slots that a track keeps for its life; freed slots
    are reused, so memory stays at the peak number of live tracks. The size rows simply have no
    velocity variance, which makes them random walks within the same arithmetic.

    Process noise is integrated over the real elapsed time dt (white acceleration for the centre,
    white velocity for the size), which makes one prediction over 0.2 s the same as two over 0.1 s:
    the filter does not care about frame rate.
    """

    def __init__(self, capacity: int = 32) -> None:
        self._pos = np.zeros((capacity, 4))
        self._vel = np.zeros((capacity, 4))
        self._p_pp = np.zeros((capacity, 4))
        self._p_pv = np.zeros((capacity, 4))
        self._p_vv = np.zeros((capacity, 4))
        self._observed = np.zeros((capacity, 4))
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._used = np.zeros(capacity, dtype=bool)

    @property
    def capacity(self) -> int:
        return self._pos.shape[0]

    def add(self, box_xyxy: FloatArray) -> int:
        """Start a filter at one detected box; returns its slot."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        measurement = _xyxy_to_cxcywh(box_xyxy)
        height = max(measurement[3], _MIN_SIZE_PX)
        self._pos[slot] = measurement
        self._vel[slot] = 0.0
        self._p_pp[slot] = (_MEASUREMENT_STD * height) ** 2
        self._p_pv[slot] = 0.0
        self._p_vv[slot] = (_INITIAL_VELOCITY_STD * height) ** 2
        self._observed[slot] = box_xyxy
        self._used[slot] = True
        return slot

    def remove(self, slot: int) -> None:
        # Zeroed so that the predictions run over free slots stay finite.
        self._pos[slot] = 0.0
        self._vel[slot] = 0.0
        self._p_pp[slot] = 0.0
        self._p_pv[slot] = 0.0
        self._p_vv[slot] = 0.0
        self._observed[slot] = 0.0
        self._used[slot] = False
        self._free.append(slot)

    def predict(self, dt: float) -> None:
        """Advance every slot by dt seconds (free slots are all zeros and stay so)."""
        if dt <= 0.0:
            return
        height = np.maximum(self._pos[:, 3:4], _MIN_SIZE_PX)
        q = (_ACCELERATION_STD * height) ** 2
        self._pos += self._vel * dt
        self._p_pp += 2.0 * dt * self._p_pv + dt * dt * self._p_vv + q * (dt**3 / 3.0)
        self._p_pv += dt * self._p_vv + q * (dt * dt / 2.0)
        self._p_vv += q * dt
        self._p_pp += self._size_drift_var(height) * dt
        # A box cannot shrink through zero however its size was moving before a gap.
        np.maximum(self._pos[:, 2:4], _MIN_SIZE_PX * self._used[:, None], out=self._pos[:, 2:4])

    @staticmethod
    def _size_drift_var(height: FloatArray) -> FloatArray:
        return (_SIZE_DRIFT_STD * height) ** 2

    def update(self, slots: IntArray, boxes_xyxy: FloatArray) -> None:
        """Correct the given slots with one detected box each."""
        if slots.size == 0:
            return
        self._observed[slots] = boxes_xyxy
        measurement = _xyxy_to_cxcywh(boxes_xyxy)
        pos = self._pos[slots]
        height = np.maximum(pos[:, 3:4], _MIN_SIZE_PX)
        r = (_MEASUREMENT_STD * height) ** 2
        p_pp = self._p_pp[slots]
        p_pv = self._p_pv[slots]
        innovation_var = p_pp + r
        gain_p = p_pp / innovation_var
        gain_v = p_pv / innovation_var
        residual = measurement - pos
        self._pos[slots] = pos + gain_p * residual
        self._vel[slots] += gain_v * residual
        self._p_vv[slots] -= gain_v * p_pv
        self._p_pp[slots] = (1.0 - gain_p) * p_pp
        self._p_pv[slots] = (1.0 - gain_p) * p_pv

    def predicted_state(self, dt: float) -> FloatArray:
        """Every slot's (cx, cy, w, h) dt seconds ahead, the filter itself unchanged."""
        state: FloatArray = self._pos + self._vel * dt
        return state

    def boxes(self, slots: IntArray) -> FloatArray:
        """The current estimate of the given slots as (K, 4) x1, y1, x2, y2."""
        return _cxcywh_to_xyxy(self._pos[slots])

    def all_boxes(self) -> FloatArray:
        """The current estimate of every slot, indexed by slot (free slots are zero-sized boxes)."""
        return _cxcywh_to_xyxy(self._pos)

    def observed_box(self, slot: int) -> FloatArray:
        """The last measured box of one slot, x1, y1, x2, y2 (read only)."""
        return self._observed[slot]

    def set_centre_velocity(self, slot: int, velocity: tuple[float, float]) -> None:
        """Start a slot moving (a track carried across a restart keeps its pace)."""
        self._vel[slot, :2] = velocity

    def centre_velocity(self, slot: int) -> FloatArray:
        """The estimated velocity of one slot's box centre, pixels a second (read only)."""
        return self._vel[slot, :2]

    def all_observed(self) -> FloatArray:
        """The last measured box of every slot, x1, y1, x2, y2, indexed by slot (read only)."""
        return self._observed

    def _grow(self) -> None:
        old = self.capacity
        new = old * 2
        for name in ("_pos", "_vel", "_p_pp", "_p_pv", "_p_vv", "_observed"):
            grown = np.zeros((new, 4))
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        used = np.zeros(new, dtype=bool)
        used[:old] = self._used
        self._used = used
        self._free.extend(range(new - 1, old - 1, -1))


def _xyxy_to_cxcywh(boxes: FloatArray) -> FloatArray:
    out = np.empty_like(boxes)
    out[..., 2:] = boxes[..., 2:] - boxes[..., :2]
    out[..., :2] = boxes[..., :2] + 0.5 * out[..., 2:]
    return out


def _cxcywh_to_xyxy(state: FloatArray) -> FloatArray:
    out = np.empty_like(state)
    half = 0.5 * state[..., 2:]
    out[..., :2] = state[..., :2] - half
    out[..., 2:] = state[..., :2] + half
    return out


def _buffered(boxes: FloatArray, scale: float = BRIDGED_BUFFER) -> FloatArray:
    grown = np.empty_like(boxes)
    margin = scale * (boxes[:, 2:] - boxes[:, :2])
    grown[:, :2] = boxes[:, :2] - margin
    grown[:, 2:] = boxes[:, 2:] + margin
    return grown


def match_by_iou(
    predicted: FloatArray,
    detected: FloatArray,
    min_iou: float,
    last_seen: FloatArray | None = None,
    refused: npt.NDArray[np.bool_] | None = None,
    look_cost: FloatArray | None = None,
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Optimal one-to-one matching on 1 - IoU, pairs below `min_iou` refused.

    `last_seen`, when given, marks the bridged tracks: it holds for each track the box where it was
    last detected, or NaN for a track seen on the previous frame. A bridged track overlaps a
    detection by the best of its prediction and that box, both buffered by `BRIDGED_BUFFER`. The
    last box is OC-SORT's observation-centric recovery: after a gap the extrapolated box has often
    drifted away from a person who stopped or turned, while where they were last seen still covers them.

    `refused`, when given, marks (row, col) pairs that may not match whatever their overlap.
    `look_cost`, when given, is added to the cost of the pairs that pass the gate: among people
    close together, who is who is told by the look as well as by the overlap.

    Gated pairs get a huge but finite cost, so the solver first maximises the number of acceptable
    pairs and only then their total overlap; any gated pair it still had to use is dropped after.
    Returns (pairs of (row, col)), unmatched rows, unmatched columns.
    """
    rows, cols = predicted.shape[0], detected.shape[0]
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    iou = iou_matrix(predicted, detected)
    if last_seen is not None:
        bridged = np.flatnonzero(~np.isnan(last_seen[:, 0]))
        if bridged.size:
            grown = _buffered(detected)
            iou[bridged] = np.maximum(
                np.maximum(iou[bridged], iou_matrix(_buffered(predicted[bridged]), grown)),
                iou_matrix(_buffered(last_seen[bridged]), grown),
            )
    if refused is not None:
        iou = np.where(refused, 0.0, iou)
    cost = 1.0 - iou if look_cost is None else 1.0 - iou + look_cost
    cost = np.where(iou >= min_iou, cost, _GATED_COST)
    row_ind, col_ind = linear_sum_assignment(cost)
    pairs = [(int(r), int(c)) for r, c in zip(row_ind, col_ind, strict=True) if iou[r, c] >= min_iou]
    matched_rows = {r for r, _ in pairs}
    matched_cols = {c for _, c in pairs}
    return (
        pairs,
        [r for r in range(rows) if r not in matched_rows],
        [c for c in range(cols) if c not in matched_cols],
    )


@dataclass(slots=True)
class _LiveTrack:
    """The tracker's own bookkeeping for one track (the published view is stage_data.PersonTrack)."""

    slot: int
    first_seen_ts: float
    last_seen_ts: float
    hits: int = 1
    track_id: int = 0
    """0 while tentative; the id is given on confirmation."""
    missed: bool = False
    look: npt.NDArray[np.float32] | None = None
    """The appearance descriptor, averaged over high-score detections; None before the first."""
    still_at: tuple[float, float] = (math.nan, math.nan)
    """The centre of the spot where the detections have stayed since `still_since_ts`."""
    still_since_ts: float = math.nan
    held_still: bool = False
    """Bridged as a person standing still: held on the spot, matched on plain overlap."""

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def note_position(self, box: FloatArray, ts: float) -> None:
        cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
        radius = STILL_RADIUS_H * max(float(box[3] - box[1]), _MIN_SIZE_PX)
        if not math.hypot(cx - self.still_at[0], cy - self.still_at[1]) <= radius:  # NaN: the first
            self.still_at = (float(cx), float(cy))
            self.still_since_ts = ts

    @property
    def still_for_s(self) -> float:
        """How long the detections have stayed on one spot, up to the last one."""
        return self.last_seen_ts - self.still_since_ts

    def remember_look(self, descriptor: npt.NDArray[np.float32]) -> None:
        if not descriptor.any():
            return
        if self.look is None:
            self.look = descriptor.copy()
            return
        blended = _APPEARANCE_MEMORY * self.look + (1.0 - _APPEARANCE_MEMORY) * descriptor
        self.look = (blended / max(float(np.linalg.norm(blended)), 1e-9)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _LostTrack:
    """A confirmed track out of view that may still be recognised (see the module doc)."""

    track_id: int
    first_seen_ts: float
    last_seen_ts: float
    box: FloatArray
    """Where it was last detected, x1, y1, x2, y2."""
    velocity: FloatArray
    """Of the box centre, pixels a second, when it was last detected."""
    look: npt.NDArray[np.float32] | None
    still_at: tuple[float, float] = (math.nan, math.nan)
    still_since_ts: float = math.nan

    def expected_centre(self, ts: float) -> FloatArray:
        centre: FloatArray = 0.5 * (self.box[:2] + self.box[2:])
        return centre + self.velocity * min(ts - self.last_seen_ts, _REID_EXTRAPOLATE_S)

    @property
    def height(self) -> float:
        return max(float(self.box[3] - self.box[1]), _MIN_SIZE_PX)

    def ended(self) -> EndedTrack:
        return EndedTrack(track_id=self.track_id, first_seen_ts=self.first_seen_ts, last_seen_ts=self.last_seen_ts)


_NO_BOXES = np.zeros((0, 4))


class PersonTracker:
    """Gives each person a stable id across frames; see the module doc for the life cycle.

    `first_id` lets ids continue across restarts (the store persists `next_id`). `frame_size`
    (width, height), when known, ends a bridged track as soon as its prediction has left the frame
    entirely: the person walked out, and bridging would only keep a ghost in the count.
    """

    def __init__(self, cfg: TrackerConfig, first_id: int = 1, frame_size: tuple[int, int] | None = None) -> None:
        if first_id < 1:
            raise ValueError("first_id must be at least 1")
        self._cfg = cfg
        self._next_id = first_id
        self._filter = BoxKalmanFilter()
        self._tracks: list[_LiveTrack] = []
        self._lost: list[_LostTrack] = []
        self._frame_interval_s = 0.1
        """Oldest first: lost tracks are appended as they are lost."""
        self._last_ts: float | None = None
        self._frame_size = frame_size

    @property
    def next_id(self) -> int:
        """The id the next confirmed track will get; persist it to keep ids unique across restarts."""
        return self._next_id

    def reconfigure(self, cfg: TrackerConfig) -> None:
        """Apply a reloaded config (SIGHUP); live tracks and their ids carry on under the new rules."""
        self._cfg = cfg

    def update(self, boxes: BoxArray, ts: float, looks: DescriptorArray | None = None) -> TrackerOutput:
        """Take one frame's detections, (N, 5) x1, y1, x2, y2, score in pixels, seen at `ts` seconds.

        `looks`, when given, holds an appearance descriptor for each row of `boxes` (appearance.py);
        without it, a lost track is recognised by where it is and its size alone."""
        if not math.isfinite(ts):
            raise ValueError(f"timestamp must be finite, got {ts}")
        ended: list[EndedTrack] = []
        if self._last_ts is not None and ts < self._last_ts:
            # The clock went backwards (a looped file restarted its timestamps, or the wall clock
            # was set back): gaps and ages measured across that are meaningless, so every track
            # ends with the times it had, and this frame starts afresh.
            ended.extend(self._end_tracks(list(self._tracks)))
            ended.extend(self._end_lost(len(self._lost)))
        dt = 0.0 if self._last_ts is None else ts - self._last_ts
        self._last_ts = ts
        if dt > 0.0:
            # The usual time between detected frames, robust to one long pause (a reconnect).
            self._frame_interval_s = min(dt, 0.8 * self._frame_interval_s + 0.2 * dt)

        # Tracks gone for too long leave before association: after a long pause in the input (a
        # reconnect) nobody is assumed to be still where they were.
        self._filter.predict(dt)
        ended.extend(self._retire_stale(ts))
        predicted = self._filter.all_boxes()

        det_boxes, det_scores, det_looks = _split_boxes(boxes, looks)
        high = np.flatnonzero(det_scores >= self._cfg.high_score)
        low = np.flatnonzero(det_scores < self._cfg.high_score)

        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if not t.confirmed]
        matched: list[tuple[_LiveTrack, int]] = []

        # Stage 1: high-score boxes to all confirmed tracks, bridged ones included.
        observed = self._filter.all_observed()
        pairs, rest_confirmed, rest_high = match_by_iou(
            _boxes_of(confirmed, predicted),
            det_boxes[high],
            self._cfg.match_iou,
            _last_seen_of_bridged(confirmed, observed),
            _someone_else(confirmed, det_looks[high]),
            _look_cost(confirmed, det_looks[high]),
        )
        matched.extend((confirmed[r], int(high[c])) for r, c in pairs)
        rest_confirmed_tracks = [confirmed[r] for r in rest_confirmed]
        rest_high_idx = high[rest_high]

        # Stage 2: low-score boxes, only to the confirmed tracks still unmatched.
        pairs, still_unmatched, _ = match_by_iou(
            _boxes_of(rest_confirmed_tracks, predicted),
            det_boxes[low],
            max(self._cfg.match_iou, _LOW_SCORE_MATCH_IOU),
            _last_seen_of_bridged(rest_confirmed_tracks, observed),
            _someone_else(rest_confirmed_tracks, det_looks[low]),
        )
        matched.extend((rest_confirmed_tracks[r], int(low[c])) for r, c in pairs)

        # Stage 3: leftover high-score boxes back on the spot where a lost track was last detected
        # take it up again at once: a person standing still whom the detector lost for a while.
        rest_high_idx = self._revive_in_place(det_boxes, det_looks, rest_high_idx, ts, matched)

        # Stage 4: leftover high-score boxes to tentative tracks.
        pairs, _, new_high = match_by_iou(
            _boxes_of(tentative, predicted), det_boxes[rest_high_idx], self._cfg.match_iou
        )
        matched.extend((tentative[r], int(rest_high_idx[c])) for r, c in pairs)

        if matched:
            slots = np.fromiter((t.slot for t, _ in matched), dtype=np.intp, count=len(matched))
            rows = np.fromiter((d for _, d in matched), dtype=np.intp, count=len(matched))
            self._filter.update(slots, det_boxes[rows])

        confirming: list[_LiveTrack] = []
        for track, row in matched:
            track.hits += 1
            track.last_seen_ts = ts
            track.missed = False
            track.held_still = False
            track.note_position(det_boxes[row], ts)
            if det_scores[row] >= self._cfg.high_score:
                track.remember_look(det_looks[row])
            if not track.confirmed and track.hits >= self._cfg.confirm_hits:
                confirming.append(track)
        for r in still_unmatched:
            track = rest_confirmed_tracks[r]
            if not track.missed and self._still_hold_s(track) > self._cfg.max_gap_s:
                # Held where they stand: a small velocity left over from jitter would walk the box
                # away over a long hold and leave a ghost beside the person.
                self._filter.set_centre_velocity(track.slot, (0.0, 0.0))
                track.held_still = True
            track.missed = True

        for c in new_high:
            row = int(rest_high_idx[c])
            track = _LiveTrack(slot=self._filter.add(det_boxes[row]), first_seen_ts=ts, last_seen_ts=ts)
            track.note_position(det_boxes[row], ts)
            track.remember_look(det_looks[row])
            self._tracks.append(track)
            if self._cfg.confirm_hits <= 1:
                confirming.append(track)
        newly_confirmed = self._confirm_or_recognise(confirming, ts)

        estimate = self._filter.all_boxes()
        if self._frame_size is not None:
            ended.extend(self._end_tracks(self._left_the_frame(estimate)))

        visible = self._visible(estimate)
        by_id = {p.track_id: p for p in visible}
        return TrackerOutput(
            ts=ts,
            visible=visible,
            confirmed=tuple(by_id[t.track_id] for t in newly_confirmed),
            ended=tuple(ended),
        )

    def predict(self, ts: float) -> TrackerOutput:
        """The people in view as they should be at `ts`, between two detected frames, without
        changing any track: frames skipped by the detection rate still show where everyone is."""
        if self._last_ts is None or ts <= self._last_ts:
            return TrackerOutput(ts=ts, visible=self._visible(self._filter.all_boxes()))
        estimate = _cxcywh_to_xyxy(self._filter.predicted_state(ts - self._last_ts))
        return TrackerOutput(ts=ts, visible=self._visible(estimate))

    def snapshot(self) -> tuple[TrackSnapshot, ...]:
        """The confirmed tracks, in view and lost, as plain data to carry across a restart."""
        saved = []
        for track in self._tracks:
            if not track.confirmed:
                continue  # not counted yet: if it is a person, it is confirmed again after the restart
            box = self._filter.observed_box(track.slot)
            velocity = self._filter.centre_velocity(track.slot)
            still = math.isfinite(track.still_since_ts)
            saved.append(
                TrackSnapshot(
                    track_id=track.track_id,
                    first_seen_ts=track.first_seen_ts,
                    last_seen_ts=track.last_seen_ts,
                    box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    velocity=(float(velocity[0]), float(velocity[1])),
                    hits=track.hits,
                    lost=False,
                    look=_look_tuple(track.look),
                    still_at=track.still_at if still else None,
                    still_since_ts=track.still_since_ts if still else None,
                )
            )
        for lost in self._lost:
            saved.append(
                TrackSnapshot(
                    track_id=lost.track_id,
                    first_seen_ts=lost.first_seen_ts,
                    last_seen_ts=lost.last_seen_ts,
                    box=(float(lost.box[0]), float(lost.box[1]), float(lost.box[2]), float(lost.box[3])),
                    velocity=(float(lost.velocity[0]), float(lost.velocity[1])),
                    hits=0,
                    lost=True,
                    look=_look_tuple(lost.look),
                    still_at=lost.still_at if math.isfinite(lost.still_since_ts) else None,
                    still_since_ts=lost.still_since_ts if math.isfinite(lost.still_since_ts) else None,
                )
            )
        return tuple(saved)

    def restore(self, saved: Iterable[TrackSnapshot], shift_s: float, clock_ts: float) -> None:
        """Take back tracks saved before a restart, their times moved by `shift_s` onto this run's
        clock; `clock_ts` is when (on this clock) they were saved.

        Each comes back bridged (or lost) with its id and first-seen time, and is matched again as
        any track that missed a few frames is: a person still there goes on and is not counted
        again. One that is not matched ends as usual, with the times it had, so its visit is
        recorded once."""
        for snap in saved:
            look = np.asarray(snap.look, dtype=np.float32) if snap.look is not None else None
            first_seen, last_seen = snap.first_seen_ts + shift_s, snap.last_seen_ts + shift_s
            box = np.asarray(snap.box, dtype=np.float64)
            still_at, still_since = (math.nan, math.nan), math.nan
            if snap.still_at is not None and snap.still_since_ts is not None:
                still_at, still_since = snap.still_at, snap.still_since_ts + shift_s
            if snap.lost:
                velocity = np.asarray(snap.velocity, dtype=np.float64)
                self._lost.append(
                    _LostTrack(snap.track_id, first_seen, last_seen, box, velocity, look, still_at, still_since)
                )
            else:
                track = _LiveTrack(
                    slot=self._filter.add(box),
                    first_seen_ts=first_seen,
                    last_seen_ts=last_seen,
                    hits=snap.hits,
                    track_id=snap.track_id,
                    missed=True,
                    look=look,
                )
                self._filter.set_centre_velocity(track.slot, snap.velocity)
                track.still_at, track.still_since_ts = still_at, still_since
                self._tracks.append(track)
            self._next_id = max(self._next_id, snap.track_id + 1)
        self._last_ts = clock_ts if self._last_ts is None else max(self._last_ts, clock_ts)

    def end_all(self, ts: float) -> TrackerOutput:
        """End every track now (end of input, shutdown, a new input). Ids keep counting up."""
        ended = self._end_tracks(list(self._tracks)) + self._end_lost(len(self._lost))
        self._last_ts = None
        return TrackerOutput(ts=ts, visible=(), ended=tuple(ended))

    def _hold_s(self, track: _LiveTrack) -> float:
        """How long a track may go undetected and still be in view (see the module doc)."""
        if not track.confirmed:
            return min(max(TENTATIVE_MAX_GAP_S, TENTATIVE_MAX_GAP_FRAMES * self._frame_interval_s), self._cfg.max_gap_s)
        return max(self._cfg.max_gap_s, self._still_hold_s(track))

    def _still_hold_s(self, track: _LiveTrack) -> float:
        if track.still_for_s < STILL_MIN_S:
            return 0.0
        return min(self._cfg.stationary_hold_s, STILL_HOLD_FACTOR * track.still_for_s)

    def _retire_stale(self, ts: float) -> list[EndedTrack]:
        """Tracks past their hold leave the view: tentative ones vanish, confirmed ones are lost
        (or end, with no re-identification window); lost ones past the window end."""
        stale = [t for t in self._tracks if ts - t.last_seen_ts > self._hold_s(t)]
        keep_lost = self._cfg.reid_window_s > 0.0
        self._lost.extend(self._as_lost(track) for track in stale if track.confirmed and keep_lost)
        ended = self._end_tracks([t for t in stale if not (t.confirmed and keep_lost)])
        for track in stale:
            if track.confirmed and keep_lost:
                self._drop(track)
        expired = sum(1 for lost in self._lost if ts - lost.last_seen_ts > self._cfg.reid_window_s)
        return ended + self._end_lost(expired)

    def _as_lost(self, track: _LiveTrack) -> _LostTrack:
        """A confirmed track as it stands when it was last detected: what recognition compares."""
        return _LostTrack(
            track_id=track.track_id,
            first_seen_ts=track.first_seen_ts,
            last_seen_ts=track.last_seen_ts,
            box=self._filter.observed_box(track.slot).copy(),
            velocity=self._filter.centre_velocity(track.slot).copy(),
            look=track.look,
            still_at=track.still_at,
            still_since_ts=track.still_since_ts,
        )

    def _end_lost(self, how_many: int) -> list[EndedTrack]:
        """End the `how_many` lost tracks seen longest ago."""
        self._lost.sort(key=lambda lost: lost.last_seen_ts)
        gone, self._lost = self._lost[:how_many], self._lost[how_many:]
        return [lost.ended() for lost in gone]

    def _revive_in_place(
        self,
        det_boxes: FloatArray,
        det_looks: DescriptorArray,
        candidates: IntArray,
        ts: float,
        matched: list[tuple[_LiveTrack, int]],
    ) -> IntArray:
        """Match detections to lost tracks by overlap with where each was last detected (and look);
        each matched lost track comes back as a confirmed track. Returns the detections left over."""
        if not self._lost or not candidates.size:
            return candidates
        last_boxes = np.stack([lost.box for lost in self._lost])
        pairs, _, rest = match_by_iou(last_boxes, det_boxes[candidates], _REVIVE_IOU)
        revived: set[int] = set()
        for r, c in pairs:
            lost, row = self._lost[r], int(candidates[c])
            if lost.look is not None:
                distance = float(appearance.distance(lost.look[None], det_looks[row][None])[0, 0])
                if distance > _REID_APPEARANCE_MAX:  # NaN (an unknown look) passes
                    rest.append(c)
                    continue
            track = _LiveTrack(
                slot=self._filter.add(det_boxes[row]),
                first_seen_ts=lost.first_seen_ts,
                last_seen_ts=lost.last_seen_ts,
                hits=self._cfg.confirm_hits,
                track_id=lost.track_id,
                look=lost.look,
                still_at=lost.still_at,
                still_since_ts=lost.still_since_ts,
            )
            self._tracks.append(track)
            matched.append((track, row))
            revived.add(r)
        self._lost = [lost for i, lost in enumerate(self._lost) if i not in revived]
        return candidates[sorted(rest)]

    def _confirm_or_recognise(self, confirming: list[_LiveTrack], ts: float) -> list[_LiveTrack]:
        """Give each confirming track the id of the person it is, or a new one; returns the new.

        That person may be a lost track, or a confirmed track still bridging a gap: when two people
        cross, or one is hidden behind another, the detection of the one who reappears often misses
        their own drifting prediction and starts a new track instead. Once that track confirms near
        where the bridged one is expected, looking alike, it is that person: it takes their id and
        first-seen time, and the bridged track is dropped without ending (nobody left)."""
        bridged = [t for t in self._tracks if t.confirmed and t.missed]
        candidates = self._lost + [self._as_lost(t) for t in bridged]
        recognised: set[int] = set()
        if confirming and candidates:
            cost = self._recognition_cost(confirming, candidates, ts)
            rows, cols = linear_sum_assignment(cost)
            taken: set[int] = set()
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[r, c] >= _GATED_COST:
                    continue
                track, known = confirming[r], candidates[c]
                track.track_id = known.track_id
                track.first_seen_ts = known.first_seen_ts
                recognised.add(r)
                if c < len(self._lost):
                    taken.add(c)
                else:
                    self._drop(bridged[c - len(self._lost)])
            self._lost = [lost for i, lost in enumerate(self._lost) if i not in taken]
        newly_confirmed = []
        for r, track in enumerate(confirming):
            if r not in recognised:
                track.track_id = self._next_id
                self._next_id += 1
                newly_confirmed.append(track)
        return newly_confirmed

    def _recognition_cost(self, confirming: list[_LiveTrack], candidates: list[_LostTrack], ts: float) -> FloatArray:
        """Cost of each (confirming track, known track) pair: distance from where the known one was
        expected, as a share of how far it may have gone, plus the appearance distance; gated."""
        boxes = _boxes_of(confirming, self._filter.all_boxes())
        centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], _MIN_SIZE_PX)
        unknown = np.zeros(appearance.DESCRIPTOR_SIZE, dtype=np.float32)
        looks = np.stack([t.look if t.look is not None else unknown for t in confirming])
        known_looks = np.stack([known.look if known.look is not None else unknown for known in candidates])
        look_distance = appearance.distance(looks, known_looks)
        cost = np.full((len(confirming), len(candidates)), _GATED_COST)
        for c, known in enumerate(candidates):
            radius = known.height * (_REID_RADIUS_H + _REID_SPREAD_H * max(0.0, ts - known.last_seen_ts))
            offset = np.linalg.norm(centres - known.expected_centre(ts), axis=1) / radius
            ratio = heights / known.height
            look = look_distance[:, c]
            fits = (offset <= 1.0) & (ratio <= _REID_SIZE_RATIO) & (ratio >= 1.0 / _REID_SIZE_RATIO)
            fits &= np.isnan(look) | (look <= _REID_APPEARANCE_MAX)  # an unknown look does not veto
            cost[fits, c] = offset[fits] + np.nan_to_num(look[fits], nan=_REID_APPEARANCE_MAX)
        return cost

    def _visible(self, estimate: FloatArray) -> tuple[PersonTrack, ...]:
        confirmed = [t for t in self._tracks if t.confirmed]
        if not confirmed:
            return ()
        boxes = _boxes_of(confirmed, estimate).tolist()
        return tuple(
            PersonTrack(
                track_id=t.track_id,
                box=(box[0], box[1], box[2], box[3]),
                first_seen_ts=t.first_seen_ts,
                missed=t.missed,
            )
            for t, box in zip(confirmed, boxes, strict=True)
        )

    def _left_the_frame(self, estimate: FloatArray) -> list[_LiveTrack]:
        assert self._frame_size is not None
        width, height = self._frame_size
        missed = [t for t in self._tracks if t.missed]
        if not missed:
            return []
        boxes = _boxes_of(missed, estimate)
        gone = (boxes[:, 0] >= width) | (boxes[:, 2] <= 0) | (boxes[:, 1] >= height) | (boxes[:, 3] <= 0)
        return [t for t, out in zip(missed, gone.tolist(), strict=True) if out]

    def _end_tracks(self, tracks: list[_LiveTrack]) -> list[EndedTrack]:
        ended = [
            EndedTrack(track_id=t.track_id, first_seen_ts=t.first_seen_ts, last_seen_ts=t.last_seen_ts)
            for t in tracks
            if t.confirmed
        ]
        for t in tracks:
            self._drop(t)
        return ended

    def _drop(self, track: _LiveTrack) -> None:
        self._filter.remove(track.slot)
        self._tracks.remove(track)


def _look_tuple(look: npt.NDArray[np.float32] | None) -> tuple[float, ...] | None:
    return None if look is None else tuple(round(float(v), 5) for v in look)


def _boxes_of(tracks: list[_LiveTrack], all_boxes: FloatArray) -> FloatArray:
    """The rows of `all_boxes` (indexed by filter slot) that belong to `tracks`, in their order."""
    if not tracks:
        return _NO_BOXES
    return all_boxes[np.fromiter((t.slot for t in tracks), dtype=np.intp, count=len(tracks))]


def _last_seen_of_bridged(tracks: list[_LiveTrack], observed: FloatArray) -> FloatArray:
    """Where each bridged track was last detected; NaN for tracks seen on the previous frame, whose
    prediction is only one frame old and better than where they were, and for tracks held where
    they stand, who have not moved: a buffered box would let them take a passer-by's detection."""
    boxes = _boxes_of(tracks, observed)
    if tracks:
        boxes[[not t.missed or t.held_still for t in tracks]] = np.nan
    return boxes


def _look_cost(tracks: list[_LiveTrack], looks: DescriptorArray) -> FloatArray | None:
    """LOOK_WEIGHT times the appearance distance of each (track, detection) pair; 0 where unknown."""
    if LOOK_WEIGHT <= 0.0 or not tracks or not len(looks):
        return None
    unknown = np.zeros(appearance.DESCRIPTOR_SIZE, dtype=np.float32)
    track_looks = np.stack([t.look if t.look is not None else unknown for t in tracks])
    return LOOK_WEIGHT * np.nan_to_num(appearance.distance(track_looks, looks), nan=0.0)


def _someone_else(tracks: list[_LiveTrack], looks: DescriptorArray) -> npt.NDArray[np.bool_] | None:
    """For bridged tracks, the detections that look clearly unlike them: after a gap, someone else
    may stand where the person was. Tracks seen on the previous frame are matched on overlap alone."""
    bridged = [r for r, t in enumerate(tracks) if t.missed and t.look is not None]
    if not bridged or not len(looks):
        return None
    refused = np.zeros((len(tracks), len(looks)), dtype=bool)
    track_looks = np.stack([tracks[r].look for r in bridged if tracks[r].look is not None])
    refused[bridged] = appearance.distance(track_looks, looks) > _REID_APPEARANCE_MAX  # NaN compares False
    return refused


def _split_boxes(boxes: BoxArray, looks: DescriptorArray | None) -> tuple[FloatArray, FloatArray, DescriptorArray]:
    """(N, 4) boxes and (N,) scores as float64, and their (N, D) looks (zeros when not given),
    without degenerate or non-finite rows."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return _NO_BOXES, np.zeros(0), np.zeros((0, appearance.DESCRIPTOR_SIZE), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] < 5:
        raise ValueError(f"boxes must have shape (N, 5), got {array.shape}")
    if looks is None:
        looks = np.zeros((len(array), appearance.DESCRIPTOR_SIZE), dtype=np.float32)
    elif len(looks) != len(array):
        raise ValueError(f"looks must have one row a box: {len(looks)} for {len(array)}")
    keep = np.isfinite(array[:, :5]).all(axis=1) & (array[:, 2] > array[:, 0]) & (array[:, 3] > array[:, 1])
    if not keep.all():
        array = array[keep]
        looks = looks[keep]
    return array[:, :4], array[:, 4], looks
