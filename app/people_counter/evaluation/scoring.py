"""Scores a run against ground truth: TrackEval's CLEAR and Identity metrics, and the product's counts.

Which boxes are scored: every visible track of a frame, bridged ones included (they are what the
product reports as in view), or with `detected_only` the detected ones alone.

The ground truth's conf-0 boxes are "don't care", as MOT16 and later treat distractors: a
predicted box that matches one (one-to-one, at the IoU threshold) is removed before scoring, and
an unmatched conf-0 box is no miss. For the count, a frame's error is zero anywhere between the
evaluated people and the evaluated plus the don't-care ones, and the distance to that range
outside it. (TrackEval's own MOT15 mode would instead count a box on a conf-0 person as a false
positive.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from people_counter.errors import EvaluationError, UserError
from people_counter.evaluation.mot_ground_truth import BoolArray, FloatArray, FrameTruth, GroundTruth, IntArray
from people_counter.evaluation.results_reader import FrameResult

try:
    from trackeval.datasets._base_dataset import _BaseDataset  # type: ignore[import-untyped]
    from trackeval.metrics import CLEAR, Identity  # type: ignore[import-untyped]
except ModuleNotFoundError:
    # TrackEval is an optional extra, not on devices; this module is imported by `eval` alone.
    raise UserError("scoring needs TrackEval, an optional extra: pip install 'people-counter[eval]'") from None


@dataclass(frozen=True, slots=True)
class Scores:
    iou: float
    detected_only: bool
    first_frame: int
    last_frame: int
    frames_without_results: int
    """Frames inside the scored span with no results line (dropped by a real-time run): nothing reported."""
    # MOT Challenge (TrackEval)
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    id_switches: int
    fragmentations: int
    mostly_tracked: int
    partly_tracked: int
    mostly_lost: int
    recall: float
    precision: float
    true_positives: int
    false_positives: int
    misses: int
    # The product's figures
    track_ids: int
    """Distinct track ids among the scored boxes."""
    gt_identities: int
    """Distinct evaluated ground-truth people in the scored frames."""
    final_total: int
    total_at_start: int
    """The first line's `total`: not 0 when the run carried on from a store's earlier totals."""
    final_in: int
    final_out: int
    count_mae: float
    count_bias: float
    # Ground truth
    gt_boxes: int
    dont_care_boxes: int
    dont_care_predictions: int
    """Predicted boxes removed for matching a don't-care box."""

    @property
    def frames(self) -> int:
        return self.last_frame - self.first_frame + 1


@dataclass(slots=True)
class _Collected:
    """What the frames of a run hold, gathered for scoring."""

    gt_ids: list[IntArray] = field(default_factory=list)
    tracker_ids: list[IntArray] = field(default_factory=list)
    similarity: list[FloatArray] = field(default_factory=list)
    """Per frame, in the form TrackEval's metrics take (see _trackeval_data)."""
    count_errors: list[int] = field(default_factory=list)
    track_ids: set[int] = field(default_factory=set)
    gt_identities: set[int] = field(default_factory=set)
    dont_care_boxes: int = 0
    dont_care_predictions: int = 0


def score(truth: GroundTruth, results: list[FrameResult], iou: float, detected_only: bool = False) -> Scores:
    """Score the frames from the first results line to the last."""
    first, last = results[0].frame, results[-1].frame
    span = range(first, last + 1)
    if not any(frame in truth.frames for frame in span):
        raise EvaluationError(
            f"the ground truth has no box on the frames of the results ({first + 1}-{last + 1} "
            "in its numbering): is it the same video?"
        )
    by_frame = {r.frame: r for r in results}
    seen = _Collected()
    for frame in span:
        _collect_frame(seen, truth.at(frame), by_frame.get(frame), iou, detected_only)
    data = _trackeval_data(seen)
    config = {"THRESHOLD": iou, "PRINT_CONFIG": False}
    clear, identity = CLEAR(config).eval_sequence(data), Identity(config).eval_sequence(data)
    return Scores(
        iou=iou,
        detected_only=detected_only,
        first_frame=first,
        last_frame=last,
        frames_without_results=len(span) - len(results),
        mota=float(clear["MOTA"]),
        motp=float(clear["MOTP"]),
        idf1=float(identity["IDF1"]),
        idp=float(identity["IDP"]),
        idr=float(identity["IDR"]),
        id_switches=int(clear["IDSW"]),
        fragmentations=int(clear["Frag"]),
        mostly_tracked=int(clear["MT"]),
        partly_tracked=int(clear["PT"]),
        mostly_lost=int(clear["ML"]),
        recall=float(clear["CLR_Re"]),
        precision=float(clear["CLR_Pr"]),
        true_positives=int(clear["CLR_TP"]),
        false_positives=int(clear["CLR_FP"]),
        misses=int(clear["CLR_FN"]),
        track_ids=len(seen.track_ids),
        gt_identities=len(seen.gt_identities),
        final_total=results[-1].total,
        total_at_start=results[0].total,
        final_in=results[-1].in_count,
        final_out=results[-1].out_count,
        count_mae=float(np.mean(np.abs(seen.count_errors))),
        count_bias=float(np.mean(seen.count_errors)),
        gt_boxes=int(data["num_gt_dets"]),
        dont_care_boxes=seen.dont_care_boxes,
        dont_care_predictions=seen.dont_care_predictions,
    )


def _collect_frame(
    seen: _Collected, gt: FrameTruth, result: FrameResult | None, iou: float, detected_only: bool
) -> None:
    ids, boxes = _scored_tracks(result, detected_only)
    seen.track_ids.update(ids.tolist())
    dont_care = ~gt.evaluated
    seen.dont_care_boxes += int(dont_care.sum())
    if dont_care.any() and len(ids):
        keep = _not_on_dont_care(boxes, gt.boxes, dont_care, iou)
        seen.dont_care_predictions += int((~keep).sum())
        ids, boxes = ids[keep], boxes[keep]
    evaluated_ids = gt.ids[gt.evaluated]
    seen.gt_identities.update(evaluated_ids.tolist())
    seen.gt_ids.append(evaluated_ids)
    seen.tracker_ids.append(ids)
    seen.similarity.append(box_ious(gt.boxes[gt.evaluated], boxes))
    if result is not None:
        seen.count_errors.append(_count_error(result.count, len(evaluated_ids), int(dont_care.sum())))


def box_ious(boxes_a: FloatArray, boxes_b: FloatArray) -> FloatArray:
    """(A, B) IoU of x1, y1, x2, y2 boxes, computed as TrackEval computes it for MOT Challenge."""
    ious: FloatArray = _BaseDataset._calculate_box_ious(boxes_a, boxes_b, box_format="x0y0x1y1")
    return ious


def _scored_tracks(result: FrameResult | None, detected_only: bool) -> tuple[IntArray, FloatArray]:
    if result is None:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    if detected_only:
        return result.ids[~result.missed], result.boxes[~result.missed]
    return result.ids, result.boxes


def _not_on_dont_care(boxes: FloatArray, gt_boxes: FloatArray, dont_care: BoolArray, iou: float) -> BoolArray:
    """Mask of the predicted boxes to keep: those not matched to a don't-care box.

    Predictions are matched one-to-one to every ground-truth box of the frame, so that a box on
    an evaluated person next to a don't-care one stays.
    """
    similarity = box_ious(gt_boxes, boxes)
    similarity[similarity < iou - np.finfo(float).eps] = 0.0
    rows, cols = linear_sum_assignment(-similarity)
    matched = similarity[rows, cols] > 0.0
    keep = np.ones(len(boxes), dtype=np.bool_)
    keep[cols[matched & dont_care[rows]]] = False
    return keep


def _count_error(count: int, evaluated: int, dont_care: int) -> int:
    """Signed distance from the reported count to the range a right count may take."""
    if count < evaluated:
        return count - evaluated
    return max(count - (evaluated + dont_care), 0)


def _contiguous(ids_per_frame: list[IntArray]) -> tuple[list[IntArray], int]:
    """Ids relabelled 0..n-1, as TrackEval's metrics index arrays by id; and n."""
    every = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, np.int64)
    return [np.searchsorted(every, ids).astype(np.int64) for ids in ids_per_frame], len(every)


def _trackeval_data(seen: _Collected) -> dict[str, object]:
    gt_ids, num_gt_ids = _contiguous(seen.gt_ids)
    tracker_ids, num_tracker_ids = _contiguous(seen.tracker_ids)
    return {
        "num_timesteps": len(gt_ids),
        "num_gt_ids": num_gt_ids,
        "num_tracker_ids": num_tracker_ids,
        "num_gt_dets": sum(len(ids) for ids in gt_ids),
        "num_tracker_dets": sum(len(ids) for ids in tracker_ids),
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "similarity_scores": seen.similarity,
    }
