"""MOT Challenge ground truth (`gt.txt`): `frame,id,left,top,width,height,conf,...`, one box a line.

Frames are 1-based: ground-truth frame 1 is the video's first frame (index 0), which is the
frame number the results file uses. Rows with `conf` 0 are not evaluated (MOT15): they mark
people the annotators left out, and are kept here as "don't care" boxes. Columns after `conf`
(world coordinates in MOT15, class and visibility later) are not read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from people_counter.errors import EvaluationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_MIN_FIELDS = 7


@dataclass(frozen=True, slots=True)
class FrameTruth:
    """The annotated people of one frame."""

    ids: IntArray
    boxes: FloatArray
    """(N, 4) x1, y1, x2, y2 in pixels."""
    evaluated: BoolArray
    """False for the conf-0 rows: "don't care" boxes."""


EMPTY_FRAME = FrameTruth(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.bool_))


@dataclass(frozen=True, slots=True)
class GroundTruth:
    frames: dict[int, FrameTruth]
    """By video frame index (ground-truth frame - 1)."""

    def at(self, frame_index: int) -> FrameTruth:
        return self.frames.get(frame_index, EMPTY_FRAME)


@dataclass(frozen=True, slots=True)
class _Row:
    frame_index: int
    track_id: int
    box: tuple[float, float, float, float]
    evaluated: bool


def read_text(path: Path, what: str) -> str:
    """The text of a file to score, or one line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvaluationError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{what} {path}: cannot read: {error}") from None


def load_ground_truth(path: Path) -> GroundTruth:
    text = read_text(path, "ground truth")
    rows = [_parse_row(line, f"{path}:{number}") for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise EvaluationError(f"ground truth {path}: no boxes")
    by_frame: dict[int, list[_Row]] = {}
    for row in rows:
        by_frame.setdefault(row.frame_index, []).append(row)
    frames = {}
    for frame_index, frame_rows in sorted(by_frame.items()):
        ids = np.array([r.track_id for r in frame_rows], dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise EvaluationError(f"ground truth {path}: an id appears twice on frame {frame_index + 1}")
        frames[frame_index] = FrameTruth(
            ids=ids,
            boxes=np.array([r.box for r in frame_rows], dtype=np.float64),
            evaluated=np.array([r.evaluated for r in frame_rows], dtype=np.bool_),
        )
    return GroundTruth(frames)


def _parse_row(line: str, where: str) -> _Row:
    fields = line.split(",")
    if len(fields) < _MIN_FIELDS:
        raise EvaluationError(f"{where}: expected frame,id,left,top,width,height,conf; got {line.strip()!r}")
    try:
        frame, track_id = int(float(fields[0])), int(float(fields[1]))
        left, top, width, height, conf = (float(f) for f in fields[2:7])
    except ValueError:
        raise EvaluationError(f"{where}: not a number in {line.strip()!r}") from None
    if frame < 1:
        raise EvaluationError(f"{where}: frame {frame}: MOT frames start at 1")
    if not all(math.isfinite(v) for v in (left, top, width, height)) or width <= 0 or height <= 0:
        raise EvaluationError(f"{where}: the box needs a finite position and a positive width and height")
    return _Row(frame - 1, track_id, (left, top, left + width, top + height), conf != 0.0)
