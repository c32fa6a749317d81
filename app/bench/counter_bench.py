"""`make bench`: accuracy and cost of each catalog model side by side, and a 1080p camera, in one run.

For each model: the eval figures on the sample video against its MOT15 ground truth, the
counter against the model's raw throughput, and CPU, memory and latency at real time (10 fps).
Then a 1080p, 25 fps H.264 copy of the sample video, made with the pinned ffmpeg, counted at
real time with the default model: CPU, memory, dropped and skipped frames, latency, and its
accuracy beside the original's.

Prints figures and ratios; asserts nothing. Each pair (raw, counter) is run back to back and
repeated, and the medians are reported, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from bench.raw_throughput import measure_raw_throughput
from bench.video_copies import CAMERA_1080P25, video_copy
from people_counter.config import Config, ModelConfig
from people_counter.evaluation.mot_ground_truth import load_ground_truth
from people_counter.evaluation.offline_run import count_video
from people_counter.evaluation.results_reader import load_results, on_ground_truth_frames
from people_counter.evaluation.scoring import Scores, score
from people_counter.paths import model_xml, sample_video_path
from people_counter.prepare.model_catalog import CATALOG, DEFAULT_MODEL_NAME, ModelName
from testsupport.mosquitto_broker import MosquittoBroker

SUMMARY = re.compile(r"processed (\d+) frames in ([0-9.]+) s")
FRAME_FIGURE = re.compile(r"'(dropped_frames|skipped_frames)': (\d+)")
GROUND_TRUTH = Path(__file__).resolve().parents[3] / "shared" / "data" / "pets09-s2l1" / "gt.txt"


@dataclass(frozen=True, slots=True)
class CounterRun:
    frames: int
    fps: float
    peak_rss_mb: float
    cpu_core_fraction: float
    latency_p50_ms: float
    latency_p95_ms: float
    inferences_per_frame: int
    dropped_frames: int
    skipped_frames: int


def _write_config(
    workdir: Path,
    state_dir: Path,
    broker: MosquittoBroker,
    realtime: bool,
    stream: dict[str, object],
    model: str,
    source: Path,
) -> Path:
    password_file = workdir / "mqtt-password"
    password_file.write_text(broker.users["counter"])
    data = {
        "device_id": "bench",
        "state_dir": str(state_dir),
        "input": {"source": str(source), "realtime": realtime},
        "model": {"name": model},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "username": "counter",
            "password_file": str(password_file),
        },
        "stream": stream,
    }
    path = state_dir / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _model_state_dir(workdir: Path) -> Path:
    """Use the prepared model the Makefile cached; the store goes to a fresh directory each run."""
    cached = Path(os.environ.get("PEOPLE_COUNTER_MODEL_STATE", str(workdir / "model-state")))
    for name in CATALOG:
        if not model_xml(cached, name).exists():
            command = [sys.executable, "-m", "people_counter.cli", "model", "prepare", "--state-dir", str(cached)]
            subprocess.run([*command, "--name", name], check=True)
    return cached


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_counter(
    workdir: Path,
    model_state: Path,
    broker: MosquittoBroker,
    realtime: bool,
    seconds: float | None = None,
    stream: dict[str, object] | None = None,
    on_first_frame: Callable[[Path], None] | None = None,
    model: str = DEFAULT_MODEL_NAME,
    source: Path | None = None,
) -> CounterRun:
    """One counter process over the sample video; CPU is counted from its first frame (not model loading)."""
    state_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="state-"))
    (state_dir / "models").symlink_to(model_state / "models")
    config = _write_config(
        workdir, state_dir, broker, realtime, stream or {"enabled": False}, model, source or sample_video_path()
    )
    results = state_dir / "results.jsonl"
    command = [sys.executable, "-m", "people_counter.cli", "run", "-c", str(config), "--results", str(results)]
    if not realtime:
        command.append("--no-realtime")
    # The environment the unit gives the counter (roles/people_counter/templates/people-counter.service.j2).
    process = psutil.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    peak_rss = 0
    first_frame: tuple[float, float] | None = None  # (cpu seconds, monotonic) at the first frame
    cpu_fraction = 0.0
    try:
        while process.poll() is None:
            peak_rss = max(peak_rss, process.memory_info().rss)
            if first_frame is None and results.exists() and results.stat().st_size > 0:
                first_frame = (_cpu_s(process), time.monotonic())
                if on_first_frame is not None:
                    on_first_frame(config)
            if seconds is not None and first_frame is not None and time.monotonic() - first_frame[1] > seconds:
                cpu_fraction = (_cpu_s(process) - first_frame[0]) / (time.monotonic() - first_frame[1])
                process.terminate()
                break
            time.sleep(0.05)
    except psutil.NoSuchProcess:
        pass
    _, stderr = process.communicate(timeout=30)
    if process.returncode not in (0, -15):
        raise SystemExit(f"bench: the counter failed ({process.returncode}):\n{stderr[-2000:]}")
    match = SUMMARY.search(stderr)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    latencies = sorted(line["latency_ms"] for line in lines)
    per_frame = re.search(r"with (\d+) inference", stderr)
    frame_figures = {name: int(value) for name, value in FRAME_FIGURE.findall(stderr)}
    return CounterRun(
        frames=int(match.group(1)) if match else len(lines),
        fps=int(match.group(1)) / float(match.group(2)) if match else 0.0,
        peak_rss_mb=peak_rss / 2**20,
        cpu_core_fraction=cpu_fraction,
        latency_p50_ms=latencies[len(latencies) // 2],
        latency_p95_ms=latencies[int(len(latencies) * 0.95)],
        inferences_per_frame=int(per_frame.group(1)) if per_frame else 1,
        dropped_frames=frame_figures.get("dropped_frames", 0),
        skipped_frames=frame_figures.get("skipped_frames", 0),
    )


def stopped_encoder_ratio(workdir: Path, model_state: Path, broker: MosquittoBroker, repeats: int) -> dict[str, object]:
    """The counter's --no-realtime fps with the encoder frozen (SIGSTOP), over the same run with no consumer.

    The two runs alternate, and the ratio is the median of the pairs' ratios.
    """
    from testsupport.live_stack import StreamProcess, short_tmp

    pairs: list[tuple[float, float]] = []
    for _ in range(repeats):
        with short_tmp() as run:
            section = StreamProcess.stream_section(run)
            alone = run_counter(workdir, model_state, broker, realtime=False, stream=section)
            encoder = StreamProcess(run)  # its own config names the same sockets

            def freeze_encoder(_config: Path, encoder: StreamProcess = encoder) -> None:
                time.sleep(0.5)  # long enough for the encoder to connect and take frames
                encoder.signal(signal.SIGSTOP)

            encoder.start()
            try:
                frozen = run_counter(
                    workdir, model_state, broker, realtime=False, stream=section, on_first_frame=freeze_encoder
                )
            finally:
                encoder.signal(signal.SIGCONT)
                encoder.stop()
            pairs.append((alone.fps, frozen.fps))
    return {
        "fps_no_consumer": statistics.median(a for a, _ in pairs),
        "fps_encoder_stopped": statistics.median(f for _, f in pairs),
        "ratio": statistics.median(f / a for a, f in pairs),
        "ratio_runs": [round(f / a, 3) for a, f in pairs],
    }


def accuracy(model_state: Path, model: ModelName, video: Path, rescaled: bool) -> Scores:
    """The eval figures of one offline run (a fresh store, no MQTT, as fast as it goes)."""
    config = Config(state_dir=model_state, model=ModelConfig(name=model))
    with tempfile.TemporaryDirectory(prefix="pc-bench-eval-") as workdir:
        results = load_results(count_video(config, str(video), Path(workdir), None))
    if rescaled:
        results = on_ground_truth_frames(results, 10.0, (768, 576))
    return score(load_ground_truth(GROUND_TRUTH), results, iou=0.5)


def accuracy_figures(scores: Scores) -> dict[str, object]:
    return {
        "idf1": scores.idf1,
        "mota": scores.mota,
        "id_switches": scores.id_switches,
        "final_total": scores.final_total,
        "gt_identities": scores.gt_identities,
        "count_mae": scores.count_mae,
    }


def model_figures(
    workdir: Path, model_state: Path, broker: MosquittoBroker, model: ModelName, repeats: int, seconds: float
) -> dict[str, object]:
    device = Config().model.device
    xml = model_xml(model_state, model)
    scores = accuracy(model_state, model, sample_video_path(), rescaled=False)
    raw_rates: list[float] = []
    counter_runs: list[CounterRun] = []
    for i in range(repeats):
        raw = measure_raw_throughput(xml, device, seconds=8.0)
        raw_rates.append(float(raw["inferences_per_s"]))
        run = run_counter(workdir, model_state, broker, realtime=False, seconds=None, model=model)
        counter_runs.append(run)
        print(
            f"{model} round {i + 1}: raw {raw_rates[-1]:.1f} inf/s; counter {run.fps:.1f} fps x "
            f"{run.inferences_per_frame} inf/frame over {run.frames} frames",
            flush=True,
        )
    ratios = [r.fps * r.inferences_per_frame / raw for r, raw in zip(counter_runs, raw_rates, strict=True)]
    realtime = run_counter(workdir, model_state, broker, realtime=True, seconds=seconds, model=model)
    return {
        **accuracy_figures(scores),
        "raw_inferences_per_s_median": statistics.median(raw_rates),
        "counter_fps_median": statistics.median(r.fps for r in counter_runs),
        "inferences_per_frame": counter_runs[0].inferences_per_frame,
        "ratio_median": statistics.median(ratios),
        "ratio_runs": [round(r, 3) for r in ratios],
        "peak_rss_mb_max": max(r.peak_rss_mb for r in [*counter_runs, realtime]),
        "latency_p50_ms_median": statistics.median(r.latency_p50_ms for r in counter_runs),
        "latency_p95_ms_median": statistics.median(r.latency_p95_ms for r in counter_runs),
        "realtime_latency_p50_ms": realtime.latency_p50_ms,
        "realtime_latency_p95_ms": realtime.latency_p95_ms,
        "realtime_cpu_core_fraction": realtime.cpu_core_fraction,
        "realtime_peak_rss_mb": realtime.peak_rss_mb,
    }


def camera_figures(workdir: Path, model_state: Path, broker: MosquittoBroker, seconds: float) -> dict[str, object]:
    copy = video_copy(CAMERA_1080P25)
    scores = accuracy(model_state, DEFAULT_MODEL_NAME, copy, rescaled=True)
    run = run_counter(workdir, model_state, broker, realtime=True, seconds=seconds, source=copy)
    return {
        **accuracy_figures(scores),
        "cpu_core_fraction": run.cpu_core_fraction,
        "peak_rss_mb": run.peak_rss_mb,
        "frames": run.frames,
        "dropped_frames": run.dropped_frames,
        "skipped_frames": run.skipped_frames,
        "latency_p50_ms": run.latency_p50_ms,
        "latency_p95_ms": run.latency_p95_ms,
    }


def print_report(models: dict[str, dict[str, object]], camera: dict[str, object], frozen: dict[str, object]) -> None:
    print()
    print("accuracy (sample video, PETS09-S2L1, IoU 0.5) and cost, default settings but the model")
    header = f"  {'model':10} {'IDF1':>5} {'MOTA':>5} {'total':>8} {'MAE':>5} {'raw inf/s':>9} {'counter fps':>11}"
    header += f" {'ratio':>6} {'CPU@10fps':>9} {'peak RSS':>8} {'p95 ms':>6}"
    print(header)
    for name, f in models.items():
        print(
            f"  {name:10} {f['idf1']:5.3f} {f['mota']:5.3f} {f['final_total']:>3} of {f['gt_identities']:<2}"
            f" {f['count_mae']:5.2f} {f['raw_inferences_per_s_median']:9.1f} {f['counter_fps_median']:11.1f}"
            f" {f['ratio_median']:6.3f} {100 * float(f['realtime_cpu_core_fraction']):8.0f}%"
            f" {f['peak_rss_mb_max']:6.0f} MB {f['realtime_latency_p95_ms']:6.1f}"
        )
    print("  targets: IDF1 >= 0.70, MOTA >= 0.55, total 16-22, MAE <= 0.5, ratio >= 0.85, CPU <= 50%, RSS <= 300 MB")
    print()
    default = models[DEFAULT_MODEL_NAME]
    print(f"1080p, 25 fps H.264 copy at real time, {DEFAULT_MODEL_NAME} (beside the original's figures)")
    print(
        f"  CPU {100 * float(camera['cpu_core_fraction']):.0f}% of one core (target <= 50%, decoding included);"
        f" peak RSS {camera['peak_rss_mb']:.0f} MB (target <= 300 MB)"
    )
    print(
        f"  frames {camera['frames']}: dropped {camera['dropped_frames']} (target 0), skipped by the detection rate"
        f" {camera['skipped_frames']}; latency p50 {camera['latency_p50_ms']:.1f} ms,"
        f" p95 {camera['latency_p95_ms']:.1f} ms"
    )
    print(
        f"  IDF1 {camera['idf1']:.3f} against {default['idf1']:.3f} (target within 0.02);"
        f" total {camera['final_total']} against {default['final_total']} (target within 1);"
        f" MOTA {camera['mota']:.3f}; count MAE {camera['count_mae']:.2f}"
    )
    print()
    print(
        f"encoder frozen (SIGSTOP): {frozen['fps_encoder_stopped']:.1f} fps against {frozen['fps_no_consumer']:.1f} fps"
        f" with no consumer: ratio {frozen['ratio']:.3f} (target >= 0.95)  runs: {frozen['ratio_runs']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="people-counter-bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realtime-seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp, MosquittoBroker() as broker:
        workdir = Path(tmp)
        model_state = _model_state_dir(workdir)
        models = {
            name: model_figures(workdir, model_state, broker, name, args.repeats, args.realtime_seconds)
            for name in CATALOG
        }
        camera = camera_figures(workdir, model_state, broker, args.realtime_seconds)
        frozen = stopped_encoder_ratio(workdir, model_state, broker, args.repeats)
    print_report(models, camera, frozen)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"models": models, "camera_1080p25": camera, "encoder_stopped": frozen}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
