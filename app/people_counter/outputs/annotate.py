"""Draws the live view: people boxes with ids, the counting line, the figures; blurs people.

It runs on the counting thread for every streamed frame, so it is kept cheap: the frame
is resized first (everything after works on the smaller picture), privacy blur is a
pixelation of each person box (two tiny resizes, cheaper than a Gaussian blur and
impossible to undo), and the text is a few putText calls on a small translucent panel.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from people_counter.stage_data import CounterState, PersonTrack

Frame = npt.NDArray[np.uint8]
LinePx = tuple[tuple[int, int], tuple[int, int]]

TRACK_COLOUR = (166, 184, 20)  # BGR of the dashboard's teal
BRIDGED_COLOUR = (11, 158, 245)  # amber: a box predicted over a detection gap
LINE_COLOUR = (248, 140, 129)  # the dashboard's indigo
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _pixelate(frame: Frame, x1: int, y1: int, x2: int, y2: int) -> None:
    roi = frame[y1:y2, x1:x2]
    h, w = roi.shape[:2]
    if h < 2 or w < 2:
        return
    # About ten blocks over a person's height: a face is one or two blocks.
    block = max(4, h // 10)
    small = cv2.resize(roi, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    roi[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _label(frame: Frame, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y = max(th + base + 2, y)
    cv2.rectangle(frame, (x, y - th - base - 3), (x + tw + 6, y), colour, -1)
    cv2.putText(frame, text, (x + 3, y - base - 1), FONT, scale, TEXT_COLOUR, 1, cv2.LINE_AA)


def _panel(frame: Frame, state: CounterState, scale: float) -> None:
    """The figures, top left, on a darkened band so they read on any background."""
    items = (
        ("In view", state.count),
        ("Total", state.total),
        ("In", state.in_count),
        ("Out", state.out_count),
    )
    text = "   ".join(f"{name} {value}" for name, value in items)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 2)
    pad = int(8 * scale / 0.6)
    x2, y2 = min(frame.shape[1], tw + 2 * pad), th + base + 2 * pad
    band = frame[0:y2, 0:x2]
    band[:] = (band >> 2) + (band >> 3)  # ~37% brightness: a translucent dark panel without a float blend
    cv2.putText(frame, text, (pad, pad + th), FONT, scale, TEXT_COLOUR, 2, cv2.LINE_AA)
    clock = time.strftime("%H:%M:%S", time.localtime(state.ts))
    (cw, _), _ = cv2.getTextSize(clock, FONT, scale * 0.8, 1)
    cx = frame.shape[1] - cw - pad
    cband = frame[0:y2, cx - pad : frame.shape[1]]
    cband[:] = (cband >> 2) + (cband >> 3)
    cv2.putText(frame, clock, (cx, pad + th), FONT, scale * 0.8, TEXT_COLOUR, 1, cv2.LINE_AA)


def annotate_frame(
    frame_bgr: Frame,
    tracks: Sequence[PersonTrack],
    line_px: LinePx,
    state: CounterState,
    blur_people: bool,
    out_width: int,
) -> Frame:
    """A new annotated frame of width out_width (never wider than the input); the input is untouched.

    Track boxes and line_px are in the input frame's pixels.
    """
    h, w = frame_bgr.shape[:2]
    if out_width < w:
        k = out_width / w
        # INTER_LINEAR: INTER_AREA is several times slower at non-integer ratios such as 768 -> 640.
        resized = cv2.resize(frame_bgr, (out_width, max(1, round(h * k))), interpolation=cv2.INTER_LINEAR)
        out: Frame = np.asarray(resized, dtype=np.uint8)
    else:
        k = 1.0
        out = frame_bgr.copy()
    oh, ow = out.shape[:2]
    boxes = []
    for track in tracks:
        x1, y1, x2, y2 = (round(v * k) for v in track.box)
        x1, y1 = max(0, min(ow - 1, x1)), max(0, min(oh - 1, y1))
        x2, y2 = max(x1 + 1, min(ow, x2)), max(y1 + 1, min(oh, y2))
        boxes.append((track, x1, y1, x2, y2))
    if blur_people:
        for _, x1, y1, x2, y2 in boxes:
            _pixelate(out, x1, y1, x2, y2)
    scale = max(0.4, ow / 1280)
    thickness = max(1, round(ow / 480))
    (lx1, ly1), (lx2, ly2) = line_px
    p1 = (round(lx1 * k), round(ly1 * k))
    p2 = (round(lx2 * k), round(ly2 * k))
    cv2.line(out, p1, p2, LINE_COLOUR, thickness + 1, cv2.LINE_AA)
    for p in (p1, p2):
        cv2.circle(out, p, thickness + 3, LINE_COLOUR, -1, cv2.LINE_AA)
    for track, x1, y1, x2, y2 in boxes:
        colour = BRIDGED_COLOUR if track.missed else TRACK_COLOUR
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, thickness)
        _label(out, f"#{track.track_id}", x1, y1, colour, scale * 0.8)
    _panel(out, state, scale * 1.2)
    return out
