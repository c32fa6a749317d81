"""PersonDetector on real OpenVINO: tiny IRs built here for the SSD and NanoDet forms and the
errors, and the real catalog models on real frames of the sample video."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from bench.raw_throughput import measure_raw_throughput
from people_counter.config import ModelConfig
from people_counter.errors import ModelError
from people_counter.vision.detector import (
    EXPECTED_FORMS,
    NANODET_MEAN,
    NANODET_OUTPUTS,
    NANODET_STD,
    ModelLayout,
    PersonDetector,
    Tile,
    decode,
    iou_matrix,
    nanodet_candidates,
    ov,
    preprocess,
    tile_grid,
    with_nanodet_normalisation,
)

opset = ov.opset13
FRAME_W, FRAME_H = 640, 480


def _save(model: object, path: Path) -> Path:
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _depends_on(param: object, constant: npt.NDArray[np.float32]) -> object:
    """`constant`, but computed from the input, so the graph really reads its input."""
    zero = opset.multiply(opset.reduce_mean(param, np.array([0, 1, 2, 3]), keep_dims=False), np.float32(0))
    return opset.add(opset.constant(constant), zero)


def ssd_ir(tmp_path: Path, rows: list[list[float]], input_hw: tuple[int, int] = (60, 80)) -> Path:
    """An IR of the SSD form: input [1,3,H,W] f32, output [1,1,N,7] = the given rows."""
    param = opset.parameter([1, 3, *input_hw], np.float32, name="data")
    out = _depends_on(param, np.array(rows, dtype=np.float32).reshape(1, 1, -1, 7))
    return _save(ov.Model([opset.result(out)], [param], "fake-ssd"), tmp_path / "ssd.xml")


def frame() -> npt.NDArray[np.uint8]:
    return np.full((FRAME_H, FRAME_W, 3), 127, dtype=np.uint8)


def test_ssd_form_boxes_in_pixels_score_and_label_filtered(tmp_path: Path) -> None:
    rows = [
        [0, 1, 0.9, 0.10, 0.20, 0.30, 0.80],  # a person: kept
        [0, 1, 0.2, 0.50, 0.10, 0.60, 0.50],  # below the score threshold
        [0, 2, 0.95, 0.60, 0.10, 0.80, 0.70],  # another class of a multi-class model
        [0, 1, 0.7, 0.55, 0.25, 0.75, 0.95],  # a person: kept
        [-1, 0, 0, 0, 0, 0, 0],  # end of the detections
        [0, 1, 0.99, 0.0, 0.0, 0.5, 0.5],  # after the end: padding, ignored
    ]
    cfg = ModelConfig(path=ssd_ir(tmp_path, rows), tiles="none", score_threshold=0.5, min_box_height=0.0)
    detector = PersonDetector(cfg, tmp_path)
    assert detector.layout.form == "ssd" and not detector.layout.any_label
    result = detector.detect(frame(), frame_index=7)
    assert result.frame_index == 7 and result.inference_ms > 0
    assert result.boxes.dtype == np.float32
    expected = np.array(
        [[64, 96, 192, 384, 0.9], [352, 120, 480, 456, 0.7]],
        dtype=np.float32,
    )
    np.testing.assert_allclose(result.boxes, expected, atol=0.01)


def test_ssd_single_class_detection_output_takes_any_label(tmp_path: Path) -> None:
    """A DetectionOutput with one foreground class: its label (here 0) is the person."""
    param = opset.parameter([1, 3, 40, 40], np.uint8, name="image")
    priors = np.array([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.9, 0.95]], dtype=np.float32)
    # Scores per prior for (class 0, background=class 1).
    class_preds = np.array([[0.9, 0.1, 0.3, 0.7]], dtype=np.float32)
    detections = ov.opset8.detection_output(
        opset.constant(np.zeros((1, 8), dtype=np.float32)),
        _depends_on(opset.convert(param, "f32"), class_preds),
        opset.constant(priors.reshape(1, 1, 8)),
        {
            "background_label_id": 1,
            "keep_top_k": [10],
            "nms_threshold": 0.5,
            "code_type": "caffe.PriorBoxParameter.CORNER",
            "variance_encoded_in_target": True,
            "normalized": True,
        },
    )
    xml = _save(ov.Model([opset.result(detections)], [param], "one-class"), tmp_path / "one.xml")
    cfg = ModelConfig(path=xml, tiles="none", score_threshold=0.5, min_box_height=0.0)
    detector = PersonDetector(cfg, tmp_path)
    assert detector.layout.any_label
    boxes = detector.detect(frame()).boxes
    np.testing.assert_allclose(boxes, [[64, 96, 192, 288, 0.9]], atol=0.01)


# ---------------------------------------------------------------------------- nanodet form

NANODET_LAYOUT = ModelLayout("nanodet", input_width=416, input_height=416, input_dtype=np.dtype(np.float32))
BINS = 11


def nanodet_outputs(
    persons: list[tuple[int, int, int, float, tuple[int, int, int, int]]],
) -> list[npt.NDArray[np.float32]]:
    """The six NanoDet outputs, all zero but the listed cells: (stride, column, row, person
    score, the bin each side's distribution peaks at). A peak logit of 60 makes its softmax
    one-hot, so the side is bin * stride exactly."""
    scores = {s: np.zeros((1, (416 // s) ** 2, 80), np.float32) for s in (8, 16, 32)}
    sides = {s: np.zeros((1, (416 // s) ** 2, 4 * BINS), np.float32) for s in (8, 16, 32)}
    for stride, column, row, score, peaks in persons:
        cell = row * (416 // stride) + column
        scores[stride][0, cell, 0] = score
        for side, peak in enumerate(peaks):
            sides[stride][0, cell, side * BINS + peak] = 60.0
    return [scores[8], scores[16], scores[32], sides[8], sides[16], sides[32]]


def test_nanodet_decode_measures_sides_from_cell_centres() -> None:
    outputs = nanodet_outputs(
        [
            # Stride 8, column 10, row 20: centre (84, 164). Sides 3, 6, 2, 10 bins of 8 px.
            (8, 10, 20, 0.9, (3, 6, 2, 10)),
            # Stride 32, column 12 (the last), row 0: centre (400, 16). Sides of one bin, 32 px.
            (32, 12, 0, 0.5, (1, 1, 1, 1)),
            (16, 5, 5, 0.3, (1, 1, 1, 1)),  # below the score threshold
        ]
    )
    outputs[0][0, 0, 1] = 0.99  # another class in the first cell: not a person
    # Equal logits at bins 5 and 7 of the first box's top side: a softmax of one half each, 6 bins.
    outputs[3][0, 20 * 52 + 10, BINS + 6] = 0.0
    outputs[3][0, 20 * 52 + 10, BINS + 5] = outputs[3][0, 20 * 52 + 10, BINS + 7] = 60.0
    candidates = nanodet_candidates(NANODET_LAYOUT, outputs, min_score=0.4)
    expected_input_px = [[84 - 24, 164 - 48, 84 + 16, 164 + 80, 0.9], [400 - 32, 16 - 32, 400 + 32, 16 + 32, 0.5]]
    np.testing.assert_allclose(candidates[:, :4] * 416, np.array(expected_input_px)[:, :4], atol=1e-3)
    np.testing.assert_allclose(candidates[:, 4], [0.9, 0.5], atol=1e-6)
    # A 832x832 crop at (100, 50) doubles every length; the second box is clipped to the crop.
    part = decode(NANODET_LAYOUT, outputs, Tile(100, 50, 932, 882), min_score=0.4)
    np.testing.assert_allclose(part.boxes, [[220, 282, 300, 538, 0.9], [836, 50, 932, 146, 0.5]], atol=1e-2)


def test_nanodet_input_is_the_resized_frame_normalised_inside_the_model() -> None:
    image = np.empty((300, 500, 3), dtype=np.uint8)
    image[:] = (10, 120, 250)  # B, G, R
    tensor = preprocess(
        image, Tile(0, 0, 500, 300), dataclasses.replace(NANODET_LAYOUT, input_dtype=np.dtype(np.uint8))
    )
    assert tensor.shape == (1, 416, 416, 3) and tensor.dtype == np.uint8
    # An identity graph with NanoDet's input shows what the model's own first step computes.
    param = opset.parameter([1, 3, 416, 416], np.float32, name="input_1")
    identity = ov.Model([opset.result(opset.relu(opset.add(param, opset.constant(np.float32(1000.0)))))], [param])
    compiled = ov.Core().compile_model(with_nanodet_normalisation(identity), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled({0: tensor})[0] - 1000.0
    assert out.shape == (1, 3, 416, 416)
    expected = (np.array([10, 120, 250], np.float32) - NANODET_MEAN) / NANODET_STD
    np.testing.assert_allclose(out[0, :, 200, 300], expected, atol=1e-3)


def nanodet_ir(tmp_path: Path, outputs: list[npt.NDArray[np.float32]]) -> Path:
    """An IR of the NanoDet form whose six named outputs are the given arrays."""
    param = opset.parameter([1, 3, 416, 416], np.float32, name="input_1")
    results = []
    for name, array in zip(NANODET_OUTPUTS, outputs, strict=True):
        node = _depends_on(param, array)
        node.output(0).get_tensor().set_names({f"{name}:0"})
        results.append(opset.result(node))
    return _save(ov.Model(results, [param], "fake-nanodet"), tmp_path / "nanodet.xml")


def test_nanodet_form_is_recognised_and_its_outputs_told_apart(tmp_path: Path) -> None:
    # One person at stride 16 (column 13, row 6: centre (216, 104)), found twice: by its own
    # cell and, with a lower score, by the cell to its right with the same box. NMS keeps one.
    person = (4, 2, 4, 6)  # left 64, top 32, right 64, bottom 96 px
    outputs = nanodet_outputs([(16, 13, 6, 0.8, person), (16, 14, 6, 0.6, (5, 2, 3, 6))])
    cfg = ModelConfig(name="nanodet", path=nanodet_ir(tmp_path, outputs), tiles="none", min_box_height=0.0)
    detector = PersonDetector(cfg, tmp_path)
    assert detector.layout.form == "nanodet" and cfg.min_score == 0.5
    boxes = detector.detect(frame()).boxes
    # Input box (152, 72, 280, 200) scaled from 416x416 to the 640x480 frame.
    sx, sy = FRAME_W / 416, FRAME_H / 416
    np.testing.assert_allclose(boxes, [[152 * sx, 72 * sy, 280 * sx, 200 * sy, 0.8]], atol=0.01)


def test_wrong_output_shape_names_the_expected_forms(tmp_path: Path) -> None:
    param = opset.parameter([1, 3, 60, 80], np.float32, name="data")
    out = _depends_on(param, np.zeros((1, 1, 5, 6), dtype=np.float32))
    xml = _save(ov.Model([opset.result(out)], [param], "bad"), tmp_path / "bad.xml")
    with pytest.raises(ModelError) as caught:
        PersonDetector(ModelConfig(path=xml), tmp_path)
    message = str(caught.value)
    assert EXPECTED_FORMS in message
    assert "[1,1,5,6]" in message.replace(" ", "")


def test_dynamic_input_is_refused(tmp_path: Path) -> None:
    param = opset.parameter([1, 3, -1, -1], np.float32, name="data")
    out = _depends_on(param, np.zeros((1, 1, 5, 7), dtype=np.float32))
    xml = _save(ov.Model([opset.result(out)], [param], "dyn"), tmp_path / "dyn.xml")
    with pytest.raises(ModelError, match="static"):
        PersonDetector(ModelConfig(path=xml), tmp_path)


def test_missing_model_tells_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model not found at .*model prepare"):
        PersonDetector(ModelConfig(), tmp_path / "empty-state")
    with pytest.raises(ModelError, match=r"nothing\.xml"):
        PersonDetector(ModelConfig(path=tmp_path / "nothing.xml"), tmp_path)


def _corners(tile: Tile) -> tuple[int, int, int, int]:
    return (tile.x0, tile.y0, tile.x1, tile.y1)


def test_tiles_overlap_and_cover_the_frame() -> None:
    assert [_corners(t) for t in tile_grid(768, 576, "none")] == [(0, 0, 768, 576)]
    # 2x1 on 4:3 for a square input: two full-height squares, overlapping by a third.
    left, right = tile_grid(768, 576, "2x1")
    assert (_corners(left), _corners(right)) == ((0, 0, 576, 576), (192, 0, 768, 576))
    assert left.inner_right and right.inner_left and not (left.inner_left or right.inner_right)
    # 2x2: the whole frame, then four crops overlapping by about 20% both ways.
    full, top_left, top_right, bottom_left, bottom_right = tile_grid(768, 576, "2x2")
    assert _corners(full) == (0, 0, 768, 576)
    assert top_left.x0 == top_left.y0 == 0 and (bottom_right.x1, bottom_right.y1) == (768, 576)
    assert 0.15 <= (top_left.x1 - top_right.x0) / top_left.width <= 0.25
    assert 0.15 <= (top_left.y1 - bottom_left.y0) / top_left.height <= 0.25
    # A model wider than the frame's crops would be: no crops, just the frame.
    assert len(tile_grid(640, 480, "2x1", input_aspect=544 / 320)) == 1


# ---------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def sample_frames(sample_video: Path) -> dict[int, npt.NDArray[np.uint8]]:
    wanted = {97, 165, 299, 703}
    capture = cv2.VideoCapture(str(sample_video))
    frames: dict[int, npt.NDArray[np.uint8]] = {}
    for index in range(max(wanted) + 1):
        ok, image = capture.read()
        assert ok
        if index in wanted:
            frames[index] = image
    capture.release()
    return frames


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "form", "tiles"),
    [
        ("nanodet", "nanodet", "none"),
        ("nanodet", "nanodet", "2x1"),
        ("ssdlite", "tf-od", "none"),
        ("ssdlite", "tf-od", "2x2"),
    ],
)
def test_catalog_models_find_people_without_duplicates(
    model_state_dir: Path,
    ssdlite_model_xml: Path,
    sample_frames: dict[int, npt.NDArray[np.uint8]],
    name: str,
    form: str,
    tiles: str,
) -> None:
    cfg = ModelConfig(name=name, tiles=tiles)  # type: ignore[arg-type]
    detector = PersonDetector(cfg, model_state_dir)
    assert detector.layout.form == form
    assert detector.inferences_per_frame == {"none": 1, "2x1": 2, "2x2": 5}[tiles]
    for index, image in sample_frames.items():
        submitted = [index * 10 + k for k in range(3)]
        for n in submitted:  # the same image as three frames in flight at once
            detector.submit(n, image)
        results = detector.ready() + detector.drain()
        assert [r.frame_index for r in results] == submitted
        for result in results:
            boxes = result.boxes
            # Hand counts of these frames: 7, 8, 6 and 9 people.
            assert 2 <= len(boxes) <= 12, (index, tiles, len(boxes))
            assert np.all(boxes[:, 4] >= cfg.min_score)
            assert np.all((boxes[:, 0] >= 0) & (boxes[:, 2] <= 768) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= 576))
            heights = (boxes[:, 3] - boxes[:, 1]) / 576
            assert np.all((heights >= cfg.min_box_height) & (heights <= cfg.max_box_height))
            ious = iou_matrix(boxes, boxes)
            for i, j in itertools.combinations(range(len(boxes)), 2):
                assert ious[i, j] <= cfg.nms_iou, (index, tiles, boxes[i], boxes[j])
            assert result.inference_ms > 0
        # In-flight frames are independent: the same image gives the same boxes.
        np.testing.assert_allclose(results[0].boxes, results[-1].boxes, atol=1e-3)


@pytest.mark.model
def test_ready_never_waits_and_keeps_frame_order(
    model_state_dir: Path,
    sample_frames: dict[int, npt.NDArray[np.uint8]],
) -> None:
    detector = PersonDetector(ModelConfig(tiles="2x1", infer_requests=2), model_state_dir)
    images = list(sample_frames.values())
    collected = []
    for n in range(12):
        detector.submit(n, images[n % len(images)])
        collected += detector.ready()
    collected += detector.drain()
    assert [r.frame_index for r in collected] == list(range(12))
    assert detector.in_flight == 0 and detector.drain() == []


@pytest.mark.model
@pytest.mark.parametrize("tiles", ["none", "2x1"])
def test_nanodet_finds_people_on_sample_frames(
    nanodet_model_xml: Path,
    sample_frames: dict[int, npt.NDArray[np.uint8]],
    tiles: str,
) -> None:
    cfg = ModelConfig(name="nanodet", tiles=tiles)  # type: ignore[arg-type]
    detector = PersonDetector(cfg, nanodet_model_xml.parent.parent.parent)
    assert detector.layout.form == "nanodet" and detector.model_path == nanodet_model_xml
    for index, image in sample_frames.items():
        detector.submit(index, image)
    for result in detector.drain():
        boxes = result.boxes
        # Within two of the hand counts (NanoDet found 6, 8, 6 and 7 untiled when this was written).
        hand_count = {97: 7, 165: 8, 299: 6, 703: 9}[result.frame_index]
        assert abs(len(boxes) - hand_count) <= 2, (result.frame_index, tiles, len(boxes))
        assert np.all(boxes[:, 4] >= 0.4)
        assert np.all((boxes[:, 0] >= 0) & (boxes[:, 2] <= 768) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= 576))
        ious = iou_matrix(boxes, boxes)
        np.fill_diagonal(ious, 0.0)
        assert np.all(ious <= cfg.nms_iou)


@pytest.mark.model
def test_raw_throughput_reports_speed(default_model_xml: Path, sample_video: Path) -> None:
    """The benchmark's raw-throughput run measures: figures, not a speed to meet. How fast the model
    is on this machine is `make bench`'s to report (docs/benchmarks.md); on a shared, loaded machine
    a floor on a one-second run would only flake."""
    figures = measure_raw_throughput(default_model_xml, "CPU", seconds=1.0)
    assert figures["requests"] >= 1 and figures["inferences"] >= 1
    assert figures["inferences_per_s"] > 0
    assert figures["latency_ms_p50"] > 0  # NaN if no request's latency was taken
    assert figures["cpu_ms_per_inference"] > 0
