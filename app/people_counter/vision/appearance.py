"""What a person looks like, as a small vector: colour histograms of the upper and lower body.

The tracker uses it to tell whether a person seen again after a gap (behind a lamp post, lost by
the detector for a few seconds) is the one it lost, before it counts a new person. Hue and
saturation histograms of the torso and of the legs are the classic cheap descriptor: they ignore
brightness changes across the scene, and clothes differ more between people than a pose changes
them. Each half is cropped to its central part, so that the background at the box's sides weighs
less.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

DescriptorArray = npt.NDArray[np.float32]
"""(N, DESCRIPTOR_SIZE), one L2-normalised row a box, aligned with the detector's boxes."""

_HUE_BINS = 8
_SATURATION_BINS = 4
_PARTS = 2
DESCRIPTOR_SIZE = _HUE_BINS * _SATURATION_BINS * _PARTS
_SIDE_MARGIN = 0.2
"""Share of the box width dropped at each side: mostly background."""
_MIN_PART_PX = 4


def describe(frame_bgr: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32]) -> DescriptorArray:
    """One descriptor a box (x1, y1, x2, y2 in frame pixels); a box too small to see is all zeros."""
    out = np.zeros((len(boxes), DESCRIPTOR_SIZE), dtype=np.float32)
    if not len(boxes):
        return out
    height, width = frame_bgr.shape[:2]
    for row, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64)[:, :4]):
        margin = _SIDE_MARGIN * (x2 - x1)
        left, right = int(max(0.0, x1 + margin)), int(min(width, x2 - margin))
        top, bottom = int(max(0.0, y1)), int(min(height, y2))
        if right - left < _MIN_PART_PX or bottom - top < 2 * _MIN_PART_PX:
            continue
        hsv = cv2.cvtColor(frame_bgr[top:bottom, left:right], cv2.COLOR_BGR2HSV)
        middle = hsv.shape[0] // 2
        parts = [
            cv2.calcHist([part], [0, 1], None, [_HUE_BINS, _SATURATION_BINS], [0, 180, 0, 256]).ravel()
            for part in (hsv[:middle], hsv[middle:])
        ]
        # Hellinger: the dot product of two unit rows is their Bhattacharyya coefficient.
        vector = np.sqrt(np.concatenate(parts))
        norm = float(np.linalg.norm(vector))
        if norm > 0.0:
            out[row] = vector / norm
    return out


def distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Pairwise appearance distance in [0, 1] of (A, D) and (B, D) descriptors; 0 is identical.

    A row of zeros (a box too small to describe, or not described) gives NaN: unknown."""
    similarity = np.clip(a.astype(np.float64) @ b.astype(np.float64).T, 0.0, 1.0)
    unknown = (~a.any(axis=1))[:, None] | (~b.any(axis=1))[None, :]
    return np.where(unknown, np.nan, 1.0 - similarity)
