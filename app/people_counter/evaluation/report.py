"""The scores as a table for a person, or as JSON for a machine."""

from __future__ import annotations

import json

from people_counter.evaluation.scoring import Scores

DONT_CARE_RULE = (
    'ground-truth rows with conf 0 are "don\'t care": a predicted box matching one at the IoU threshold '
    "is dropped before scoring, and a frame's count may include or leave out the people they mark"
)


def scored_boxes(scores: Scores) -> str:
    return "detected boxes only" if scores.detected_only else "every visible track, bridged ones included"


def as_dict(scores: Scores, video: str, ground_truth: str) -> dict[str, object]:
    return {
        "video": video,
        "ground_truth": ground_truth,
        "iou": scores.iou,
        "scored_boxes": "detected" if scores.detected_only else "visible",
        "frames": {
            "first": scores.first_frame,
            "last": scores.last_frame,
            "scored": scores.frames,
            "without_results": scores.frames_without_results,
        },
        "mot": {
            "mota": scores.mota,
            "motp": scores.motp,
            "idf1": scores.idf1,
            "idp": scores.idp,
            "idr": scores.idr,
            "id_switches": scores.id_switches,
            "fragmentations": scores.fragmentations,
            "mostly_tracked": scores.mostly_tracked,
            "partly_tracked": scores.partly_tracked,
            "mostly_lost": scores.mostly_lost,
            "recall": scores.recall,
            "precision": scores.precision,
            "true_positives": scores.true_positives,
            "false_positives": scores.false_positives,
            "misses": scores.misses,
        },
        "counting": {
            "track_ids": scores.track_ids,
            "gt_identities": scores.gt_identities,
            "final_total": scores.final_total,
            "total_at_start": scores.total_at_start,
            "final_in": scores.final_in,
            "final_out": scores.final_out,
            "count_mae": scores.count_mae,
            "count_bias": scores.count_bias,
        },
        "ground_truth_boxes": {
            "evaluated": scores.gt_boxes,
            "dont_care": scores.dont_care_boxes,
            "predictions_on_dont_care": scores.dont_care_predictions,
            "rule": DONT_CARE_RULE,
        },
    }


def as_json(scores: Scores, video: str, ground_truth: str) -> str:
    return json.dumps(as_dict(scores, video, ground_truth), indent=2)


def as_table(scores: Scores, video: str, ground_truth: str) -> str:
    s = scores
    frames = f"video frames {s.first_frame}-{s.last_frame} ({s.frames})"
    if s.frames_without_results:
        frames += f", {s.frames_without_results} of them with no results line (scored as reporting nobody)"
    total = f"{s.final_total} vs {s.gt_identities}"
    if s.total_at_start:
        total += f" (the run started at {s.total_at_start}: it carried on from a store)"
    rows = [
        ("MOTA", f"{s.mota:.3f}"),
        ("IDF1 (IDP / IDR)", f"{s.idf1:.3f} ({s.idp:.3f} / {s.idr:.3f})"),
        ("ID switches", f"{s.id_switches}"),
        ("fragmentations", f"{s.fragmentations}"),
        ("mostly tracked / partly / mostly lost", f"{s.mostly_tracked} / {s.partly_tracked} / {s.mostly_lost}"),
        ("recall / precision", f"{s.recall:.3f} / {s.precision:.3f}"),
        ("matched / false boxes / missed", f"{s.true_positives} / {s.false_positives} / {s.misses}"),
        ("MOTP (mean IoU of matches)", f"{s.motp:.3f}"),
        ("track ids vs people (ground truth)", f"{s.track_ids} vs {s.gt_identities}"),
        ("final total vs people", total),
        ("in / out (last line)", f"{s.final_in} / {s.final_out}"),
        ("count per frame: MAE / bias", f"{s.count_mae:.3f} / {s.count_bias:+.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"{video} against {ground_truth}",
        f"IoU {s.iou:.2f}; {frames}; scored: {scored_boxes(s)}",
        "",
        *(f"  {name.ljust(width)}  {value}" for name, value in rows),
        "",
        f"{s.gt_boxes} evaluated ground-truth boxes; {s.dont_care_boxes} with conf 0, "
        f"{s.dont_care_predictions} predicted boxes dropped on them.",
        f"Note: {DONT_CARE_RULE}.",
        "Count error: the results line's `count` against the evaluated people of the frame (negative bias: too few).",
    ]
    return "\n".join(lines)
