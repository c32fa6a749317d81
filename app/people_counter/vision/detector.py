"""Person detection with OpenVINO: model forms, tiling, merging and the async pipeline.

Three model forms are understood, recognised from the IR itself:

- "tf-od": a TF Object Detection API graph such as the default SSDLite pedestrian
  detector. One uint8 NHWC RGB input; outputs named detection_boxes [1,N,4]
  (ymin, xmin, ymax, xmax, normalised) and detection_scores [1,N]. num_detections is
  always N in these exports, so boxes are filtered by score alone.
- "ssd": an SSD DetectionOutput [1,1,N,7] (image_id, label, conf, xmin, ymin, xmax,
  ymax, normalised) with an NCHW BGR input, e.g. Open Model Zoo's
  person-detection-retail-0013. Label 1 is the person (the OMZ and COCO-SSD
  convention). When the graph's DetectionOutput declares a single foreground class
  (num_classes <= 2), every label is taken: such a model finds nothing but people,
  whatever id its exporter gave them. Rows after the first image_id < 0 are padding.
- "nanodet": the NanoDet head of the catalog model "nanodet" (converted from TensorFlow.js).
  One float32 NCHW input of BGR, (x - mean) / std per channel; per stride 8, 16 and 32,
  sigmoid class scores [1,cells,80] (person is class 0) and box side distributions
  [1,cells,4*bins] (left, top, right, bottom). A side is its softmax's expected bin times
  the stride, measured from the cell centre ((i mod columns) + 0.5) * stride. Every cell
  that passes the score is a candidate: merge()'s NMS keeps the best of each person.

Tiling (SAHI-style, see tile_grid) runs the model on overlapping crops, so that small
people get more of the model's 300x300 input. A box cut by an inner crop edge is dropped
when a box from another crop covers most of it; then a class-agnostic NMS removes the
remaining duplicates. Tiling multiplies the inference cost (2x for "2x1", 5x for "2x2");
the default is "none" because, measured on the hand-counted sample frames, the tracker's
count was already within the accuracy target without it (the numbers are in the README).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from people_counter import paths
from people_counter.config import ModelConfig
from people_counter.errors import ModelError
from people_counter.prepare.model import import_openvino
from people_counter.stage_data import BoxArray, DetectionResult
from people_counter.vision.boxes import iou_matrix

log = logging.getLogger(__name__)

ov = import_openvino()

ModelForm = Literal["tf-od", "ssd", "nanodet"]
TileMode = Literal["none", "2x1", "2x2"]
EXPECTED_FORMS = (
    "expected a TF Object Detection graph (one uint8 [1,H,W,3] input; outputs "
    "detection_boxes [1,N,4] and detection_scores [1,N]), an SSD DetectionOutput "
    "(one [1,3,H,W] input; one output [1,1,N,7]) or a NanoDet head (one [1,3,H,W] input; "
    "outputs Identity to Identity_2 [1,cells,classes] and Identity_3 to Identity_5 "
    "[1,cells,4*bins] for strides 8, 16 and 32)"
)
PERSON_LABEL = 1
TF_OD_OUTPUTS = ("detection_boxes", "detection_scores")
NANODET_STRIDES = (8, 16, 32)
# The class scores for strides 8, 16, 32, then the box distributions for the same strides.
NANODET_OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5")
NANODET_PERSON_CLASS = 0
# NanoDet's training normalisation, in BGR order. The human library's own preprocessing
# (RGB / 255) halves recall.
NANODET_MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
NANODET_STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
# Each crop overlaps its neighbour by this fraction of its own size: enough that a
# person cut by one crop's edge is whole in the next one (people here are ~40-60 px wide).
TILE_OVERLAP = 0.2
# A box edge this close (pixels) to an inner crop edge marks the box as cut by the crop.
_EDGE_PX = 3.0
# A cut box is a duplicate when another box covers this share of its area.
_CUT_COVERED = 0.6
# CPU compile settings (the precision: see compile_config).
# THROUGHPUT (two single-threaded streams on this 2-core box) beat LATENCY (one stream,
# two threads) both flat out (58-66 vs 22-27 inferences/s) and in CPU time per inference
# (about 17 vs 21-28 ms) with the box shared by other work, as a device shares it with
# the broker, the encoder and the dashboard: the two-thread stream loses time syncing.
CPU_PERFORMANCE_HINT = "THROUGHPUT"

_GRIDS: dict[str, tuple[int, int]] = {"none": (1, 1), "2x1": (2, 1), "2x2": (2, 2)}


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """What the detector needs to know about a model's input and outputs."""

    form: ModelForm
    input_width: int
    input_height: int
    input_dtype: np.dtype[Any]
    any_label: bool = False
    """ssd form only: take every label (a single-class model)."""


@dataclass(frozen=True, slots=True)
class Tile:
    """A crop of the frame, in pixels, and which of its edges are inside the frame."""

    x0: int
    y0: int
    x1: int
    y1: int
    inner_left: bool = False
    inner_top: bool = False
    inner_right: bool = False
    inner_bottom: bool = False

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


# ---------------------------------------------------------------------------- model


def resolve_model_path(cfg: ModelConfig, state_dir: Path) -> Path:
    xml = cfg.path if cfg.path is not None else paths.model_xml(state_dir, cfg.name)
    if not xml.is_file():
        raise ModelError(f"model not found at {xml}: run `people-counter model prepare`")
    return xml


def _output_named(model: Any, name: str) -> int | None:
    for index, port in enumerate(model.outputs):
        if any(n == name or n.startswith(f"{name}:") for n in port.get_names()):
            return index
    return None


def _outputs_named(model: Any, names: tuple[str, ...]) -> tuple[int, ...] | None:
    """The indices of the outputs with these names, in that order; None unless all are there."""
    indices = [_output_named(model, name) for name in names]
    return tuple(i for i in indices if i is not None) if None not in indices else None


def _shape_text(model: Any) -> str:
    ins = ", ".join(str(p.get_partial_shape()) for p in model.inputs)
    outs = ", ".join(
        f"{sorted(p.get_names())[0] if p.get_names() else '?'} {p.get_partial_shape()}" for p in model.outputs
    )
    return f"inputs [{ins}], outputs [{outs}]"


def _single_class(model: Any) -> bool:
    """True when the graph's DetectionOutput has one foreground class (plus background).

    DetectionOutput-1 states num_classes; version 8 dropped the attribute, and the count is
    then the class scores per prior: class_preds [1, priors*classes], proposals [1, 1|2, priors*4].
    """
    for op in model.get_ordered_ops():
        if op.get_type_name() != "DetectionOutput":
            continue
        classes = op.get_attributes().get("num_classes")
        if classes is None:
            class_preds, proposals = op.input(1).get_partial_shape(), op.input(2).get_partial_shape()
            if not (class_preds.is_static and proposals.is_static):
                return False
            priors = int(proposals.to_shape()[2]) // 4
            classes = int(class_preds.to_shape()[1]) // max(priors, 1)
        return int(classes) <= 2
    return False


def _is_ssd_output(port: Any) -> bool:
    shape = port.get_partial_shape()
    if not shape.is_static or len(shape) != 4:
        return False
    dims = [int(d) for d in shape.to_shape()]
    return dims[0] == 1 and dims[1] == 1 and dims[3] == 7


def _is_nanodet_head(model: Any, height: int, width: int) -> bool:
    """True when the six NanoDet outputs are there with one row per cell of each stride."""
    indices = _outputs_named(model, NANODET_OUTPUTS)
    if indices is None:
        return False
    shapes = [model.outputs[i].get_partial_shape() for i in indices]
    if not all(shape.is_static and len(shape) == 3 for shape in shapes):
        return False
    dims = [[int(d) for d in shape.to_shape()] for shape in shapes]
    for stride, scores, distributions in zip(NANODET_STRIDES, dims[:3], dims[3:], strict=True):
        cells = math.ceil(height / stride) * math.ceil(width / stride)
        if scores[:2] != [1, cells] or distributions[:2] != [1, cells] or distributions[2] % 4:
            return False
    return True


def inspect_model(model: Any) -> ModelLayout:
    """Recognise the model's form from its ports; anything else is a ModelError."""
    if len(model.inputs) != 1:
        raise ModelError(f"{EXPECTED_FORMS}; found {_shape_text(model)}")
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or not shape.is_static:
        raise ModelError(
            f"the model input must have a static 4-D shape (a dynamic one is 3.5x slower); "
            f"{EXPECTED_FORMS}; found {_shape_text(model)}"
        )
    dims = [int(d) for d in shape.to_shape()]
    dtype = np.dtype(model.inputs[0].get_element_type().to_dtype())
    if _outputs_named(model, TF_OD_OUTPUTS) is not None and dims[0] == 1 and dims[3] == 3:
        return ModelLayout("tf-od", input_width=dims[2], input_height=dims[1], input_dtype=dtype)
    if dims[:2] == [1, 3] and _is_nanodet_head(model, dims[2], dims[3]):
        return ModelLayout("nanodet", input_width=dims[3], input_height=dims[2], input_dtype=dtype)
    if len(model.outputs) == 1 and dims[0] == 1 and dims[1] == 3 and _is_ssd_output(model.outputs[0]):
        return ModelLayout(
            "ssd",
            input_width=dims[3],
            input_height=dims[2],
            input_dtype=dtype,
            any_label=_single_class(model),
        )
    raise ModelError(f"{EXPECTED_FORMS}; found {_shape_text(model)}")


def compile_config(device: str, form: ModelForm) -> dict[str, str]:
    """The compile properties the detector and the raw-throughput benchmark share.

    The precision is the device's default (bf16 on a CPU that has avx512_bf16 or AMX, f32 on
    one that has not, f16 on GPU and NPU), except for the SSD-style graphs on a CPU: for them
    the default bf16 was about 2x slower here than f32. NanoDet gains from it instead: on the
    sample video bf16 found the same people as f32 (recall 0.899 both, precision 0.917 against
    0.916) at half the CPU time per inference (22.5 against 43.5 ms)."""
    if device == "CPU" and form != "nanodet":
        return {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": CPU_PERFORMANCE_HINT}
    return {"PERFORMANCE_HINT": CPU_PERFORMANCE_HINT}


def load_model(xml: Path, device: str, core: Any | None = None) -> tuple[Any, ModelLayout]:
    """Read, check and compile the IR. Returns (compiled model, layout)."""
    core = core if core is not None else ov.Core()
    try:
        model = core.read_model(str(xml))
    except RuntimeError as error:
        raise ModelError(f"{xml}: OpenVINO cannot read this model: {_first_line(error)}") from None
    layout = inspect_model(model)
    if layout.form == "nanodet":
        model = with_nanodet_normalisation(model)
        layout = dataclasses.replace(layout, input_dtype=np.dtype(np.uint8))
    try:
        compiled = core.compile_model(model, device, compile_config(device, layout.form))
    except RuntimeError as error:
        raise ModelError(f"{xml}: cannot compile for {device}: {_first_line(error)}") from None
    return compiled, layout


def with_nanodet_normalisation(model: Any) -> Any:
    """The NanoDet graph taking the resized frame as it is (uint8, NHWC, BGR): the per-channel
    (x - mean) / std and the transpose to NCHW run inside the compiled model. In numpy they cost
    7 ms a frame on the counting thread, a quarter of the time a frame may take."""
    ppp = ov.preprocess.PrePostProcessor(model)
    tensor = ppp.input()
    tensor.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    tensor.preprocess().convert_element_type(ov.Type.f32).mean(NANODET_MEAN.tolist()).scale(NANODET_STD.tolist())
    tensor.model().set_layout(ov.Layout("NCHW"))
    return ppp.build()


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# ---------------------------------------------------------------------------- tiles


def tile_grid(
    width: int, height: int, mode: str, input_aspect: float = 1.0, overlap: float = TILE_OVERLAP
) -> list[Tile]:
    """The crops to run the model on, in frame pixels.

    "none" is the whole frame. "2x1" is two crops of full height, side by side, at least
    `overlap` apart and widened until they are no narrower than the model's input aspect
    (`input_aspect` = width / height; a 4:3 frame gives two squares overlapping by a
    third): a narrow crop squeezed into a square input stretches people sideways, and
    the measurement showed that costs more recall than it gains. They cover the full
    height, so the whole frame adds nothing. "2x2" is four crops with `overlap`, plus
    the whole frame first, where a person taller than a crop is still whole.
    """
    full = Tile(0, 0, width, height)
    if mode == "none":
        return [full]
    cols, rows = _GRIDS[mode]
    tile_h = min(height, height / (rows - (rows - 1) * overlap))
    tile_w = min(width, max(width / (cols - (cols - 1) * overlap), tile_h * input_aspect))
    if tile_w >= width and tile_h >= height:
        return [full]  # a wide model on a narrow frame: the crops would be the frame itself
    xs = _spans(width, cols, tile_w)
    ys = _spans(height, rows, tile_h)
    tiles = [full] if rows > 1 else []
    for row, (y0, y1) in enumerate(ys):
        for col, (x0, x1) in enumerate(xs):
            tiles.append(
                Tile(
                    x0,
                    y0,
                    x1,
                    y1,
                    inner_left=col > 0,
                    inner_top=row > 0,
                    inner_right=col < cols - 1,
                    inner_bottom=row < rows - 1,
                )
            )
    return tiles


def _spans(length: int, count: int, size: float) -> list[tuple[int, int]]:
    """`count` spans of `size` from one end of `length` to the other, evenly overlapping."""
    if count == 1:
        return [(0, length)]
    step = (length - size) / (count - 1)
    return [(round(i * step), min(length, round(i * step + size))) for i in range(count)]


def preprocess(frame_bgr: npt.NDArray[np.uint8], tile: Tile, layout: ModelLayout) -> npt.NDArray[Any]:
    crop = frame_bgr[tile.y0 : tile.y1, tile.x0 : tile.x1]
    # Bilinear, as the TF-OD exporters resize in-graph; INTER_AREA costs more for little.
    resized = cv2.resize(crop, (layout.input_width, layout.input_height), interpolation=cv2.INTER_LINEAR)
    if layout.form == "tf-od":
        tensor = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)[np.newaxis]
    elif layout.form == "nanodet":
        tensor = resized[np.newaxis]  # normalised inside the model: with_nanodet_normalisation
    else:
        tensor = resized.transpose(2, 0, 1)[np.newaxis]
    return np.ascontiguousarray(tensor, dtype=layout.input_dtype)


# ---------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class TileBoxes:
    """One crop's detections in frame pixels, and which of them the crop's edges cut."""

    boxes: BoxArray
    cut: npt.NDArray[np.bool_]


def decode(layout: ModelLayout, outputs: list[npt.NDArray[Any]], tile: Tile, min_score: float) -> TileBoxes:
    """Model outputs of one crop -> (N,5) x1,y1,x2,y2,score in frame pixels, score-filtered."""
    if layout.form == "tf-od":
        raw_boxes, raw_scores = outputs[0].reshape(-1, 4), outputs[1].reshape(-1)
        keep = raw_scores >= min_score
        ymin, xmin, ymax, xmax = raw_boxes[keep].T
        scores = raw_scores[keep]
    elif layout.form == "nanodet":
        xmin, ymin, xmax, ymax, scores = nanodet_candidates(layout, outputs, min_score).T
    else:
        rows = outputs[0].reshape(-1, 7)
        padding = np.flatnonzero(rows[:, 0] < 0)
        rows = rows[: padding[0]] if padding.size else rows
        keep = rows[:, 2] >= min_score
        if not layout.any_label:
            keep &= rows[:, 1] == PERSON_LABEL
        _, _, scores, xmin, ymin, xmax, ymax = rows[keep].T
    boxes = np.empty((scores.size, 5), dtype=np.float32)
    boxes[:, 0] = tile.x0 + np.clip(xmin, 0.0, 1.0) * tile.width
    boxes[:, 1] = tile.y0 + np.clip(ymin, 0.0, 1.0) * tile.height
    boxes[:, 2] = tile.x0 + np.clip(xmax, 0.0, 1.0) * tile.width
    boxes[:, 3] = tile.y0 + np.clip(ymax, 0.0, 1.0) * tile.height
    boxes[:, 4] = scores
    cut = np.zeros(scores.size, dtype=bool)
    if tile.inner_left:
        cut |= boxes[:, 0] <= tile.x0 + _EDGE_PX
    if tile.inner_top:
        cut |= boxes[:, 1] <= tile.y0 + _EDGE_PX
    if tile.inner_right:
        cut |= boxes[:, 2] >= tile.x1 - _EDGE_PX
    if tile.inner_bottom:
        cut |= boxes[:, 3] >= tile.y1 - _EDGE_PX
    return TileBoxes(boxes, cut)


def nanodet_candidates(layout: ModelLayout, outputs: list[npt.NDArray[Any]], min_score: float) -> BoxArray:
    """Each cell whose person score passes, as (N,5) x1,y1,x2,y2 normalised to the input, score.

    `outputs` are the six NanoDet outputs in NANODET_OUTPUTS order.
    """
    parts = []
    for stride, class_scores, distributions in zip(NANODET_STRIDES, outputs[:3], outputs[3:], strict=True):
        person = class_scores.reshape(-1, class_scores.shape[-1])[:, NANODET_PERSON_CLASS]
        cells = np.flatnonzero(person >= min_score)
        bins = distributions.shape[-1] // 4
        logits = distributions.reshape(-1, 4, bins)[cells]
        weights = np.exp(logits - logits.max(axis=2, keepdims=True))
        weights /= weights.sum(axis=2, keepdims=True)
        sides = (weights @ np.arange(bins, dtype=np.float32)) * stride  # (N,4): left, top, right, bottom
        columns = math.ceil(layout.input_width / stride)
        centre_x = (cells % columns + 0.5) * stride
        centre_y = (cells // columns + 0.5) * stride
        part = np.empty((cells.size, 5), dtype=np.float32)
        part[:, 0] = (centre_x - sides[:, 0]) / layout.input_width
        part[:, 1] = (centre_y - sides[:, 1]) / layout.input_height
        part[:, 2] = (centre_x + sides[:, 2]) / layout.input_width
        part[:, 3] = (centre_y + sides[:, 3]) / layout.input_height
        part[:, 4] = person[cells]
        parts.append(part)
    return np.concatenate(parts)


def _areas(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)


def _intersections(box: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    w = np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0])
    h = np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1])
    return np.maximum(w, 0) * np.maximum(h, 0)


def nms(boxes: BoxArray, iou_threshold: float) -> BoxArray:
    """Greedy class-agnostic NMS: the best-scoring box of each overlapping group stays."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    boxes = boxes[order]
    kept: list[int] = []
    suppressed = np.zeros(len(boxes), dtype=bool)
    ious = iou_matrix(boxes, boxes)
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= ious[i] > iou_threshold
    return boxes[kept]


def merge(parts: list[TileBoxes], nms_iou: float) -> BoxArray:
    """Join the crops' detections into one set with no duplicate person."""
    if not parts:
        return np.zeros((0, 5), dtype=np.float32)
    boxes = np.concatenate([p.boxes for p in parts])
    cut = np.concatenate([p.cut for p in parts])
    if len(boxes) == 0:
        return boxes
    # A crop that cuts a person reports a partial box whose IoU with the whole one can be
    # small (half a person is half the area), so NMS alone would count them twice. Drop
    # a cut box when an uncut box (from another crop or the whole frame) covers most of it.
    whole = boxes[~cut]
    if cut.any() and len(whole):
        areas = np.maximum(_areas(boxes), 1e-6)
        drop = np.zeros(len(boxes), dtype=bool)
        for i in np.flatnonzero(cut):
            covered = _intersections(boxes[i], whole) / areas[i]
            drop[i] = bool(np.any(covered >= _CUT_COVERED))
        boxes = boxes[~drop]
    return nms(boxes, nms_iou)


def filter_heights(part: TileBoxes, frame_height: int, cfg: ModelConfig) -> TileBoxes:
    """Drop boxes too small or too tall to be a person, before they can suppress others."""
    heights = (part.boxes[:, 3] - part.boxes[:, 1]) / float(frame_height)
    keep = (heights >= cfg.min_box_height) & (heights <= cfg.max_box_height)
    return TileBoxes(part.boxes[keep], part.cut[keep])


# ---------------------------------------------------------------------------- pipeline


@dataclass(slots=True)
class _PendingFrame:
    frame_index: int
    frame_height: int
    remaining: int
    parts: list[TileBoxes | None] = field(default_factory=list)
    """One slot a crop, in the crops' order: requests finish in any order, and merging them in
    the order they finished made the same frame give its boxes in a different order."""
    infer_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Job:
    pending: _PendingFrame
    tile: Tile
    tile_index: int
    started: float
    tensor: npt.NDArray[Any]
    """Kept alive until the request is done: the request reads it without a copy."""


class PersonDetector:
    """Finds people in BGR frames, several frames in flight at once.

    The caller submits frames in order and collects results with ready() (non-blocking)
    or drain() (waits for all). Results come out in submission order: a frame is only
    released once every earlier frame is. `inference_ms` of a result is the mean wall
    time of that frame's requests (one per crop), from start to completion callback.
    """

    def __init__(self, cfg: ModelConfig, state_dir: Path, core: Any | None = None) -> None:
        self.cfg = cfg
        self.model_path = resolve_model_path(cfg, state_dir)
        self.compiled, self.layout = load_model(self.model_path, cfg.device, core)
        self._queue = ov.AsyncInferQueue(self.compiled, cfg.infer_requests)
        self._queue.set_callback(self._on_done)
        self._order: deque[_PendingFrame] = deque()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._tiles_for: tuple[int, int] | None = None
        self._tiles: list[Tile] = []
        self._output_indices = self._find_output_indices()
        log.info(
            "model %s (%s form, input %dx%d) on %s: tiles %s, %d inference(s) a frame, %d requests",
            self.model_path,
            self.layout.form,
            self.layout.input_width,
            self.layout.input_height,
            cfg.device,
            cfg.tiles,
            self.inferences_per_frame,
            cfg.infer_requests,
        )

    @property
    def inferences_per_frame(self) -> int:
        """Model runs per frame: 1 (none), 2 (2x1), 5 (2x2: four crops and the whole frame).

        Exact for the frames seen so far; before the first frame, the figure for 4:3.
        """
        if self._tiles_for is not None:
            return len(self._tiles)
        aspect = self.layout.input_width / self.layout.input_height
        return len(tile_grid(768, 576, self.cfg.tiles, aspect))

    def tiles(self, width: int, height: int) -> list[Tile]:
        if self._tiles_for != (width, height):
            aspect = self.layout.input_width / self.layout.input_height
            self._tiles = tile_grid(width, height, self.cfg.tiles, aspect)
            self._tiles_for = (width, height)
        return self._tiles

    def submit(self, frame_index: int, frame_bgr: npt.NDArray[np.uint8]) -> None:
        """Start the frame's inferences. Blocks only while every request is busy."""
        self._raise_if_failed()
        height, width = frame_bgr.shape[:2]
        tiles = self.tiles(width, height)
        pending = _PendingFrame(frame_index, height, remaining=len(tiles), parts=[None] * len(tiles))
        with self._lock:
            self._order.append(pending)
        for tile_index, tile in enumerate(tiles):
            tensor = preprocess(frame_bgr, tile, self.layout)
            # Wait for a free request first, so that the wait is not counted as inference.
            self._queue.get_idle_request_id()
            job = _Job(pending, tile, tile_index, time.perf_counter(), tensor)
            self._queue.start_async({0: tensor}, job, share_inputs=True)

    def _on_done(self, request: Any, job: _Job) -> None:
        # Runs on an OpenVINO thread: copy what is needed out of the request, nothing more.
        try:
            elapsed_ms = (time.perf_counter() - job.started) * 1000.0
            outputs = [request.get_output_tensor(i).data for i in self._output_indices]
            part = decode(self.layout, outputs, job.tile, self.cfg.min_score)
            part = filter_heights(part, job.pending.frame_height, self.cfg)
            with self._lock:
                job.pending.parts[job.tile_index] = part
                job.pending.infer_ms.append(elapsed_ms)
                job.pending.remaining -= 1
        except BaseException as error:  # surfaced to the caller by ready()
            with self._lock:
                self._error = error

    def _find_output_indices(self) -> tuple[int, ...]:
        if self.layout.form == "ssd":
            return (0,)
        indices = _outputs_named(self.compiled, NANODET_OUTPUTS if self.layout.form == "nanodet" else TF_OD_OUTPUTS)
        assert indices is not None  # inspect_model checked them
        return indices

    def ready(self) -> list[DetectionResult]:
        """The results finished so far, in frame order; never waits."""
        self._raise_if_failed()
        done: list[_PendingFrame] = []
        with self._lock:
            while self._order and self._order[0].remaining == 0:
                done.append(self._order.popleft())
        return [self._result(p) for p in done]

    def drain(self) -> list[DetectionResult]:
        """Wait for every submitted frame, then return what ready() returns."""
        self.wait_idle()
        return self.ready()

    def wait_idle(self) -> None:
        """Wait until no request runs. A completion callback that runs while Python
        shuts down aborts the process (glibc: "exception not rethrown")."""
        self._queue.wait_all()

    @property
    def in_flight(self) -> int:
        """Frames submitted whose results have not been collected yet."""
        with self._lock:
            return len(self._order)

    def detect(self, frame_bgr: npt.NDArray[np.uint8], frame_index: int = 0) -> DetectionResult:
        """One frame, synchronously (tests and tools; the pipeline uses submit/ready)."""
        if self.in_flight:
            raise RuntimeError("detect() needs an idle detector: drain() it first")
        self.submit(frame_index, frame_bgr)
        return self.drain()[0]

    def _result(self, pending: _PendingFrame) -> DetectionResult:
        boxes = merge([part for part in pending.parts if part is not None], self.cfg.nms_iou)
        return DetectionResult(
            frame_index=pending.frame_index,
            boxes=np.ascontiguousarray(boxes, dtype=np.float32),
            inference_ms=float(np.mean(pending.infer_ms)) if pending.infer_ms else 0.0,
        )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"inference failed: {error}") from error
