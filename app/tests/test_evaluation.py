"""`people-counter eval`: figures worked out by hand on tiny ground truth, bad inputs, and the real run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from counter_process import make_state_dir, read_results, write_config

from people_counter.errors import EvaluationError
from people_counter.evaluation.mot_ground_truth import load_ground_truth
from people_counter.evaluation.report import as_json, as_table
from people_counter.evaluation.results_reader import load_results, on_ground_truth_frames
from people_counter.evaluation.scoring import Scores, score
from people_counter.paths import database_path

PETS_GT = Path(__file__).resolve().parents[3] / "shared" / "data" / "pets09-s2l1" / "gt.txt"

# Two people side by side, 50 x 100 pixels, standing still.
A = (100.0, 100.0, 50.0, 100.0)
B = (300.0, 100.0, 50.0, 100.0)


def gt_line(frame: int, person: int, box: tuple[float, float, float, float], conf: int = 1) -> str:
    left, top, width, height = box
    return f"{frame},{person},{left},{top},{width},{height},{conf},-1,-1,-1"


def track(track_id: int, box: tuple[float, float, float, float], missed: bool = False) -> dict[str, object]:
    left, top, width, height = box
    return {"id": track_id, "box": [left, top, left + width, top + height], "missed": missed}


def results_line(frame: int, tracks: list[dict[str, object]], count: int | None = None, total: int = 0) -> str:
    line = {
        "frame": frame,
        "ts": frame / 10,
        "count": len(tracks) if count is None else count,
        "total": total,
        "in": 0,
        "out": 0,
        "tracks": tracks,
        "latency_ms": 1.0,
    }
    return json.dumps(line)


def scores_of(tmp_path: Path, gt: list[str], results: list[str], iou: float = 0.5, **kwargs: bool) -> Scores:
    gt_path, results_path = tmp_path / "gt.txt", tmp_path / "results.jsonl"
    gt_path.write_text("\n".join(gt) + "\n")
    results_path.write_text("\n".join(results) + "\n")
    return score(load_ground_truth(gt_path), load_results(results_path), iou, **kwargs)


def test_a_perfect_tracker_scores_one(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 5)] + [gt_line(f, 2, B) for f in range(1, 5)]
    # Ground-truth frame f is video frame f - 1; ids need not be the ground truth's.
    results = [results_line(f, [track(7, A), track(8, B)], total=2) for f in range(4)]
    s = scores_of(tmp_path, gt, results)
    assert (s.mota, s.idf1, s.idp, s.idr, s.recall, s.precision) == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert (s.id_switches, s.fragmentations, s.mostly_tracked, s.mostly_lost) == (0, 0, 2, 0)
    assert (s.track_ids, s.gt_identities, s.final_total) == (2, 2, 2)
    assert (s.count_mae, s.count_bias, s.frames) == (0.0, 0.0, 4)


def test_one_id_switch_halfway(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 5)]
    results = [results_line(f, [track(1 if f < 2 else 2, A)]) for f in range(4)]
    s = scores_of(tmp_path, gt, results)
    # MOTA = 1 - (misses + false boxes + switches) / people boxes = 1 - 1/4.
    assert s.id_switches == 1 and s.mota == pytest.approx(0.75)
    # Either id covers 2 of the 4 frames: IDTP 2, IDFN 2, IDFP 2, so IDF1 = 2*2 / (2*2 + 2 + 2).
    assert (s.idf1, s.idp, s.idr) == pytest.approx((0.5, 0.5, 0.5))
    assert (s.track_ids, s.gt_identities, s.fragmentations) == (2, 1, 0)


def test_a_gap_is_a_fragmentation_and_misses(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 5)] + [gt_line(f, 2, B) for f in range(1, 5)]
    # A is lost on the middle two frames and found again under its id; B is tracked throughout.
    results = [results_line(f, [track(1, A), track(2, B)] if f in (0, 3) else [track(2, B)]) for f in range(4)]
    s = scores_of(tmp_path, gt, results)
    assert (s.misses, s.false_positives, s.fragmentations, s.id_switches) == (2, 0, 1, 0)
    assert (s.mota, s.recall, s.precision) == pytest.approx((0.75, 0.75, 1.0))
    # A is tracked on 2 of its 4 frames: partly tracked (20-80 %); B mostly.
    assert (s.mostly_tracked, s.partly_tracked, s.mostly_lost) == (1, 1, 0)
    assert (s.count_mae, s.count_bias) == pytest.approx((0.5, -0.5))


def test_conf_0_rows_are_dont_care(tmp_path: Path) -> None:
    gt = [gt_line(1, 1, A), gt_line(1, 2, B, conf=0), gt_line(2, 1, A), gt_line(2, 2, B, conf=0)]
    # Frame 0: a box on the conf-0 person too (dropped, not a false positive), count 2.
    # Frame 1: no box on them (not a miss), count 1. Both counts are right.
    results = [results_line(0, [track(1, A), track(2, B)]), results_line(1, [track(1, A)])]
    s = scores_of(tmp_path, gt, results)
    assert (s.mota, s.precision, s.recall, s.false_positives, s.misses) == (1.0, 1.0, 1.0, 0, 0)
    assert (s.gt_boxes, s.dont_care_boxes, s.dont_care_predictions, s.gt_identities) == (2, 2, 1, 1)
    assert s.count_mae == 0.0
    # Counting outside the range [evaluated, evaluated + don't care] is an error again.
    over = [results_line(0, [track(1, A)], count=3), results_line(1, [track(1, A)], count=0)]
    s = scores_of(tmp_path, gt, over)
    assert (s.count_mae, s.count_bias) == pytest.approx((1.0, 0.0))


def test_count_error_per_frame(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 5)]
    counts = [1, 2, 3, 1]
    results = [results_line(f, [track(1, A)], count=c) for f, c in enumerate(counts)]
    s = scores_of(tmp_path, gt, results)
    assert (s.count_mae, s.count_bias) == pytest.approx((0.75, 0.75))


def test_the_iou_threshold_decides_a_match(tmp_path: Path) -> None:
    gt = [gt_line(1, 1, A)]
    # Shifted by 20 of 50 pixels: IoU 30 * 100 / (2 * 5000 - 3000) = 0.43.
    shifted = (120.0, 100.0, 50.0, 100.0)
    results = [results_line(0, [track(1, shifted)])]
    strict = scores_of(tmp_path, gt, results, iou=0.5)
    assert (strict.true_positives, strict.false_positives, strict.misses, strict.mota) == (0, 1, 1, -1.0)
    loose = scores_of(tmp_path, gt, results, iou=0.4)
    assert (loose.true_positives, loose.mota, loose.iou) == (1, 1.0, 0.4)


def test_bridged_boxes_are_scored_unless_detected_only(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 3)]
    results = [results_line(0, [track(1, A)]), results_line(1, [track(1, A, missed=True)])]
    assert scores_of(tmp_path, gt, results).recall == 1.0
    detected = scores_of(tmp_path, gt, results, detected_only=True)
    assert (detected.recall, detected.detected_only) == (0.5, True)
    # The count is the product's, whatever boxes are scored.
    assert detected.count_mae == 0.0


def test_frames_with_no_results_line_report_nobody(tmp_path: Path) -> None:
    gt = [gt_line(f, 1, A) for f in range(1, 4)]
    results = [results_line(0, [track(1, A)]), results_line(2, [track(1, A)])]
    s = scores_of(tmp_path, gt, results)
    assert (s.frames, s.frames_without_results, s.misses) == (3, 1, 1)
    # The count error is taken over the frames the counter reported on.
    assert s.count_mae == 0.0


def test_report_names_the_iou_the_boxes_and_the_dont_care_rule(tmp_path: Path) -> None:
    s = scores_of(tmp_path, [gt_line(1, 1, A)], [results_line(0, [track(1, A)], total=3)])
    table = as_table(s, "clip.mp4", "gt.txt")
    assert "IoU 0.50" in table and "bridged ones included" in table and "conf 0" in table
    assert "MOTA" in table and "IDF1" in table and "MAE" in table
    data = json.loads(as_json(s, "clip.mp4", "gt.txt"))
    assert data["iou"] == 0.5 and data["scored_boxes"] == "visible"
    assert data["mot"]["mota"] == 1.0 and data["counting"]["final_total"] == 3


# -- the command --------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "people_counter.cli", *args], capture_output=True, text=True, check=False, timeout=300
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("people-counter: ") and expected in done.stderr, done.stderr


def test_bad_inputs_are_one_line(tmp_path: Path) -> None:
    gt, results = tmp_path / "gt.txt", tmp_path / "results.jsonl"
    gt.write_text(gt_line(1, 1, A) + "\n1,2,oops,3,4,5,1\n")
    results.write_text(results_line(0, [track(1, A)]) + "\n")
    assert_one_line_error(run_cli("eval", "--results", str(results), "--gt", str(gt)), "gt.txt:2: not a number")
    missing = tmp_path / "none.txt"
    assert_one_line_error(run_cli("eval", "--results", str(results), "--gt", str(missing)), "none.txt: no such file")
    gt.write_text(gt_line(1, 1, A) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run_cli("eval", "--results", str(empty), "--gt", str(gt)), "empty.jsonl: no frames")
    results.write_text("{not json\n")
    assert_one_line_error(run_cli("eval", "--results", str(results), "--gt", str(gt)), "results.jsonl:1: not a JSON")
    other_video = tmp_path / "late.jsonl"
    other_video.write_text(results_line(500, []) + "\n")
    assert_one_line_error(run_cli("eval", "--results", str(other_video), "--gt", str(gt)), "same video")
    assert_one_line_error(run_cli("eval", "--results", str(other_video), "--gt", str(gt), "--iou", "0"), "--iou")


def test_json_output(tmp_path: Path) -> None:
    gt, results = tmp_path / "gt.txt", tmp_path / "results.jsonl"
    gt.write_text(gt_line(1, 1, A) + "\n")
    results.write_text(results_line(0, [track(1, A)], total=1) + "\n")
    done = run_cli("eval", "--results", str(results), "--gt", str(gt), "--json", "--iou", "0.6")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["iou"] == 0.6 and data["mot"]["idf1"] == 1.0 and data["counting"]["gt_identities"] == 1


# -- the real model on the real video -----------------------------------------------------------


@pytest.mark.model
def test_eval_counts_the_sample_video(tmp_path: Path, sample_video: Path, model_state_dir: Path) -> None:
    if not PETS_GT.is_file():
        pytest.skip(f"no ground truth at {PETS_GT}")
    config = write_config(tmp_path / "config.yml", {"state_dir": str(model_state_dir)})
    database = database_path(model_state_dir)
    before = database.read_bytes() if database.exists() else None
    done = run_cli(
        "eval", "-c", str(config), "--input", str(sample_video), "--gt", str(PETS_GT), "--max-frames", "150", "--json"
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["frames"] == {"first": 0, "last": 149, "scored": 150, "without_results": 0}
    mot, counting = data["mot"], data["counting"]
    assert -1.0 <= mot["mota"] <= 1.0 and 0.0 < mot["idf1"] <= 1.0
    assert 0.0 < mot["recall"] <= 1.0 and 0.0 < mot["precision"] <= 1.0
    assert mot["true_positives"] + mot["misses"] == data["ground_truth_boxes"]["evaluated"]
    # A fresh store: the total starts from zero, and the configured state directory is left alone.
    assert counting["total_at_start"] == 0 and counting["final_total"] >= 1
    assert 3 <= counting["gt_identities"] <= 19 and counting["track_ids"] >= 1
    assert 0.0 <= counting["count_mae"] < 5.0
    assert (database.read_bytes() if database.exists() else None) == before


@pytest.mark.model
def test_an_offline_run_leaves_the_device_totals_alone(
    tmp_path: Path, sample_video: Path, default_model_xml: Path
) -> None:
    state = make_state_dir(tmp_path, default_model_xml)
    config = write_config(tmp_path / "config.yml", {"state_dir": str(state), "stream": {"enabled": False}})
    common = ["run", "-c", str(config), "--input", str(sample_video), "--no-realtime", "--no-mqtt"]
    kept = run_cli(*common, "--state-dir", str(state), "--max-frames", "60")
    assert kept.returncode == 0, kept.stderr
    database = database_path(state)
    digest = hashlib.sha256(database.read_bytes()).hexdigest()
    results = tmp_path / "offline.jsonl"
    offline = run_cli(*common, "--max-frames", "60", "--results", str(results))
    assert offline.returncode == 0, offline.stderr
    assert hashlib.sha256(database.read_bytes()).hexdigest() == digest
    lines = read_results(results)
    # The same frames again from zero: had it used the device's store, it would start above zero.
    assert len(lines) == 60 and lines[0]["total"] == 0 and lines[-1]["total"] >= 1


def test_results_of_a_rescaled_faster_copy_are_scored_on_the_ground_truths_frames(tmp_path: Path) -> None:
    """A 25 fps copy at 2.5 x 1.875 the size: each ground-truth frame (10 fps) takes the results
    frame nearest in time, and its boxes come back to the ground truth's size."""
    lines = []
    for index in range(10):  # 0.4 s at 25 fps: ground-truth frames 0..4 at 0.0, 0.1, ... 0.4 s
        box = [2.5 * (100 + index), 1.875 * 50, 2.5 * (140 + index), 1.875 * 150]
        lines.append(
            {
                "frame": index,
                "ts": 1000.0 + index / 25,
                "media_ts": index / 25,
                "frame_size": [1920, 1080],
                "count": 1,
                "total": 1,
                "in": 0,
                "out": 0,
                "tracks": [{"id": 1, "box": box, "missed": False}],
            }
        )
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    resampled = on_ground_truth_frames(load_results(path), gt_fps=10.0, gt_size=(768, 576))
    # media_ts 0.00 .. 0.36 s lands on ground-truth frames 0 .. 4 (0.36 s is nearest to 0.4 s).
    assert [r.frame for r in resampled] == [0, 1, 2, 3, 4]
    by_frame = {r.frame: r for r in resampled}
    assert by_frame[0].media_ts == 0.0 and by_frame[2].media_ts == 0.2 and by_frame[4].media_ts == 0.36
    np.testing.assert_allclose(by_frame[2].boxes, [[105.0, 50.0, 145.0, 150.0]])  # index 5, scaled back
    assert by_frame[2].frame_size == (768, 576)


def test_resampling_needs_the_fields_a_current_results_file_has(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"frame": 0, "count": 0, "total": 0, "in": 0, "out": 0, "tracks": []}) + "\n")
    results = load_results(path)
    assert on_ground_truth_frames(results, None, None) == results
    with pytest.raises(EvaluationError, match="--gt-fps needs"):
        on_ground_truth_frames(results, 10.0, None)
    with pytest.raises(EvaluationError, match="--gt-size needs"):
        on_ground_truth_frames(results, None, (768, 576))


@pytest.mark.parametrize(
    ("option", "value"), [("--gt-fps", "0"), ("--gt-fps", "abc"), ("--gt-size", "768"), ("--gt-size", "0x5")]
)
def test_bad_resampling_options_are_refused_by_name(tmp_path: Path, option: str, value: str) -> None:
    gt, results = tmp_path / "gt.txt", tmp_path / "results.jsonl"
    gt.write_text(gt_line(1, 1, A) + "\n")
    results.write_text(results_line(0, [track(1, A)]) + "\n")
    done = run_cli("eval", "--results", str(results), "--gt", str(gt), option, value)
    assert done.returncode == 2
    assert f"argument {option}: '{value}'" in done.stderr and "Traceback" not in done.stderr
