"""Reads the per-frame results file that `run --results` writes (outputs/results_file.py)."""

from __future__ import annotations

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
