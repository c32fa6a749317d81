"""Reads the per-frame results file that `run --results` writes (outputs/results_file.py)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from people_counter.errors import EvaluationError
from people_counter.evaluation.mot_ground_truth import BoolArray, FloatArray, IntArray, read_text

log = logging.getLogger("people_counter.evaluation")


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the counter reported for one frame."""

    frame: int
    """The video frame index (0-based)."""
    count: int
    total: int
    in_count: int
    out_count: int
    ids: IntArray
    boxes: FloatArray
    """(N, 4) x1, y1, x2, y2 in pixels: every visible track."""
    missed: BoolArray
    """True for a track bridged over a detection gap (its box is the tracker's prediction)."""
    media_ts: float | None = None
    """The frame's position in the video, seconds (files only; older results files lack it)."""
    frame_size: tuple[int, int] | None = None
    """The size the boxes are measured in (older results files lack it)."""


def load_results(path: Path, max_frames: int | None = None) -> list[FrameResult]:
    """The results lines in frame order; the first `max_frames` only, if given."""
    text = read_text(path, "results file")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        # A run that was killed may have left its last line half written.
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            log.warning("%s: the last line is cut short (a killed run?); it is left out", path)
            lines.pop()
    results = [_parse_line(line, f"{path}:{number}") for number, line in enumerate(lines, 1) if line.strip()]
    if not results:
        raise EvaluationError(f"results file {path}: no frames")
    results.sort(key=lambda r: r.frame)
    for before, after in itertools.pairwise(results):
        if before.frame == after.frame:
            raise EvaluationError(f"results file {path}: frame {after.frame} appears twice")
    return results[:max_frames] if max_frames is not None else results


def _parse_line(line: str, where: str) -> FrameResult:
    try:
        data = json.loads(line)
        tracks = data["tracks"]
        result = FrameResult(
            frame=int(data["frame"]),
            count=int(data["count"]),
            total=int(data["total"]),
            in_count=int(data["in"]),
            out_count=int(data["out"]),
            ids=np.array([int(t["id"]) for t in tracks], dtype=np.int64),
            boxes=np.array([[float(v) for v in t["box"]] for t in tracks], dtype=np.float64).reshape(-1, 4),
            missed=np.array([bool(t["missed"]) for t in tracks], dtype=np.bool_),
            media_ts=None if data.get("media_ts") is None else float(data["media_ts"]),
            frame_size=None
            if data.get("frame_size") is None
            else (int(data["frame_size"][0]), int(data["frame_size"][1])),
        )
    except json.JSONDecodeError:
        raise EvaluationError(f"{where}: not a JSON line") from None
    except KeyError as error:
        raise EvaluationError(f"{where}: no {error} field (not a `people-counter run --results` file?)") from None
    except (TypeError, ValueError):
        raise EvaluationError(f"{where}: a field has the wrong type or shape") from None
    if len(np.unique(result.ids)) != len(result.ids):
        raise EvaluationError(f"{where}: a track id appears twice")
    return result


def on_ground_truth_frames(
    results: list[FrameResult], gt_fps: float | None, gt_size: tuple[int, int] | None
) -> list[FrameResult]:
    """The results as seen on the ground truth's own copy of the video: each ground-truth frame
    (at `gt_fps`) takes the results frame nearest in time, and the boxes are scaled from the size
    they were counted at to `gt_size`. A copy of the video at another size or frame rate (a 1080p,
    25 fps camera recording of the same scene) can then be scored against the same ground truth."""
    if gt_size is not None:
        results = [_scaled(r, gt_size) for r in results]
    if gt_fps is None:
        return results
    if any(r.media_ts is None for r in results):
        raise EvaluationError("--gt-fps needs a results file with media_ts (a recorded file counted by this version)")
    nearest: dict[int, FrameResult] = {}
    for result in results:
        assert result.media_ts is not None
        frame = round(result.media_ts * gt_fps)
        best = nearest.get(frame)
        if best is None or abs(result.media_ts - frame / gt_fps) < abs(best.media_ts - frame / gt_fps):  # type: ignore[operator]
            nearest[frame] = result
    return [dataclasses.replace(nearest[frame], frame=frame) for frame in sorted(nearest)]


def _scaled(result: FrameResult, gt_size: tuple[int, int]) -> FrameResult:
    if result.frame_size is None:
        raise EvaluationError("--gt-size needs a results file with frame_size (counted by this version)")
    sx, sy = gt_size[0] / result.frame_size[0], gt_size[1] / result.frame_size[1]
    return dataclasses.replace(result, boxes=result.boxes * np.array([sx, sy, sx, sy]), frame_size=gt_size)
