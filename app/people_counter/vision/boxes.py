"""Box geometry shared by the detector (merging crops, NMS) and the tracker (association)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def iou_matrix(boxes_a: npt.NDArray[np.floating], boxes_b: npt.NDArray[np.floating]) -> FloatArray:
    """Pairwise intersection over union of (A, >=4) and (B, >=4) x1, y1, x2, y2 boxes (a score column is ignored)."""
    a = np.asarray(boxes_a, dtype=np.float64)[:, :4]
    b = np.asarray(boxes_b, dtype=np.float64)[:, :4]
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.maximum(bottom_right - top_left, 0.0)
    inter = overlap[..., 0] * overlap[..., 1]
    size_a = np.maximum(a[:, 2:] - a[:, :2], 0.0)
    size_b = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    iou: FloatArray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
    return iou
