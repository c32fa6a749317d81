"""How much the accuracy depends on how the sample video was encoded: the default model and tracker
on the original and on six copies of it (mirrored; 576p to 1080p; 10 to 30 fps), each against the
same MOT15 ground truth. A tracker tuned on one encoding alone can score high on it and far lower
on the rest; what a camera will give is the spread. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.counter_bench import GROUND_TRUTH
from bench.video_copies import ENCODINGS, mirrored_ground_truth, video_copy
from people_counter.config import Config
from people_counter.evaluation.mot_ground_truth import load_ground_truth
from people_counter.evaluation.offline_run import count_video
from people_counter.evaluation.results_reader import load_results, on_ground_truth_frames
from people_counter.evaluation.scoring import Scores, score
from people_counter.paths import sample_video_path

GROUND_TRUTH_SIZE = (768, 576)
GROUND_TRUTH_FPS = 10.0


def scores_of(config: Config, video: Path, rescaled: bool, ground_truth: Path) -> Scores:
    with tempfile.TemporaryDirectory(prefix="pc-bench-copy-") as workdir:
        results = load_results(count_video(config, str(video), Path(workdir), None))
    if rescaled:
        results = on_ground_truth_frames(results, GROUND_TRUTH_FPS, GROUND_TRUTH_SIZE)
    return score(load_ground_truth(ground_truth), results, iou=0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="encoding-spread", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True, help="where the default model is prepared")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    config = Config(state_dir=args.state_dir)
    rows: dict[str, Scores] = {}
    with tempfile.TemporaryDirectory(prefix="pc-bench-gt-") as tmp:
        mirrored_truth = mirrored_ground_truth(GROUND_TRUTH, GROUND_TRUTH_SIZE[0], Path(tmp) / "gt-mirrored.txt")
        rows["original"] = scores_of(config, sample_video_path(), False, GROUND_TRUTH)
        for copy in ENCODINGS:
            truth = mirrored_truth if copy.mirrored else GROUND_TRUTH
            rows[copy.name] = scores_of(config, video_copy(copy), copy.rescaled, truth)
            print(f"{copy.name}: IDF1 {rows[copy.name].idf1:.3f}", flush=True)
    print()
    print("the default model and tracker on each encoding of the sample video (PETS09-S2L1, IoU 0.5)")
    print(f"  {'copy':10} {'IDF1':>5} {'MOTA':>5} {'IDSW':>4} {'total':>8} {'MAE':>5}")
    for name, s in rows.items():
        print(
            f"  {name:10} {s.idf1:5.3f} {s.mota:5.3f} {s.id_switches:4d} {s.final_total:>3} of {s.gt_identities:<2}"
            f" {s.count_mae:5.2f}"
        )
    idf1 = [s.idf1 for s in rows.values()]
    totals = [s.final_total for s in rows.values()]
    print(
        f"  IDF1 median {statistics.median(idf1):.3f}, range {min(idf1):.3f}-{max(idf1):.3f};"
        f" total {min(totals)}-{max(totals)}"
    )
    if args.json:
        figures = {
            name: {
                "idf1": s.idf1,
                "mota": s.mota,
                "id_switches": s.id_switches,
                "total": s.final_total,
                "count_mae": s.count_mae,
            }
            for name, s in rows.items()
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
