"""`make bench`: the counter against the model's raw throughput, measured side by side in one run.

Prints figures and ratios; asserts nothing. Each pair (raw, counter) is run
back to back and repeated, and the medians are reported, because this
machine is noisy.
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
from people_counter.config import Config
from people_counter.paths import default_model_xml, sample_video_path
from testsupport.mosquitto_broker import MosquittoBroker

SUMMARY = re.compile(r"processed (\d+) frames in ([0-9.]+) s")


@dataclass(frozen=True, slots=True)
class CounterRun:
    frames: int
    fps: float
    peak_rss_mb: float
    cpu_core_fraction: float
    latency_p50_ms: float
    latency_p95_ms: float
    inferences_per_frame: int


def _write_config(
    workdir: Path, state_dir: Path, broker: MosquittoBroker, realtime: bool, stream: dict[str, object]
) -> Path:
    password_file = workdir / "mqtt-password"
    password_file.write_text(broker.users["counter"])
    data = {
        "device_id": "bench",
        "state_dir": str(state_dir),
        "input": {"source": str(sample_video_path()), "realtime": realtime},
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
    if not default_model_xml(cached).exists():
        command = [sys.executable, "-m", "people_counter.cli", "model", "prepare", "--state-dir", str(cached)]
        subprocess.run(command, check=True)
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
) -> CounterRun:
    """One counter process over the sample video; CPU is counted from its first frame (not model loading)."""
    state_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="state-"))
    (state_dir / "models").symlink_to(model_state / "models")
    config = _write_config(workdir, state_dir, broker, realtime, stream or {"enabled": False})
    results = state_dir / "results.jsonl"
    command = [sys.executable, "-m", "people_counter.cli", "run", "-c", str(config), "--results", str(results)]
    if not realtime:
        command.append("--no-realtime")
    process = psutil.Popen(command, stderr=subprocess.PIPE, text=True)
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
    return CounterRun(
        frames=int(match.group(1)) if match else len(lines),
        fps=int(match.group(1)) / float(match.group(2)) if match else 0.0,
        peak_rss_mb=peak_rss / 2**20,
        cpu_core_fraction=cpu_fraction,
        latency_p50_ms=latencies[len(latencies) // 2],
        latency_p95_ms=latencies[int(len(latencies) * 0.95)],
        inferences_per_frame=int(per_frame.group(1)) if per_frame else 1,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="people-counter-bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--realtime-seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    device = Config().model.device
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp, MosquittoBroker() as broker:
        workdir = Path(tmp)
        model_state = _model_state_dir(workdir)
        xml = default_model_xml(model_state)
        raw_rates: list[float] = []
        counter_runs: list[CounterRun] = []
        for i in range(args.repeats):
            raw = measure_raw_throughput(xml, device, seconds=8.0)
            raw_rates.append(float(raw["inferences_per_s"]))
            run = run_counter(workdir, model_state, broker, realtime=False, seconds=None)
            counter_runs.append(run)
            print(
                f"round {i + 1}: raw {raw_rates[-1]:.1f} inf/s; counter {run.fps:.1f} fps x "
                f"{run.inferences_per_frame} inf/frame over {run.frames} frames",
                flush=True,
            )
        per_frame = counter_runs[0].inferences_per_frame
        ratios = [r.fps * r.inferences_per_frame / raw for r, raw in zip(counter_runs, raw_rates, strict=True)]
        realtime = run_counter(workdir, model_state, broker, realtime=True, seconds=args.realtime_seconds)
        never_blocking = stopped_encoder_ratio(workdir, model_state, broker, args.repeats)
        figures = {
            "raw_inferences_per_s_median": statistics.median(raw_rates),
            "counter_fps_median": statistics.median(r.fps for r in counter_runs),
            "inferences_per_frame": per_frame,
            "ratio_median": statistics.median(ratios),
            "ratio_runs": [round(r, 3) for r in ratios],
            "peak_rss_mb_max": max(r.peak_rss_mb for r in [*counter_runs, realtime]),
            "latency_p50_ms_median": statistics.median(r.latency_p50_ms for r in counter_runs),
            "latency_p95_ms_median": statistics.median(r.latency_p95_ms for r in counter_runs),
            "realtime_latency_p50_ms": realtime.latency_p50_ms,
            "realtime_latency_p95_ms": realtime.latency_p95_ms,
            "realtime_cpu_core_fraction": realtime.cpu_core_fraction,
            "encoder_stopped": never_blocking,
        }
    print()
    print("counter benchmark (sample video, default model and settings)")
    print(f"  model raw throughput        {figures['raw_inferences_per_s_median']:.1f} inferences/s (median)")
    print(f"  counter --no-realtime       {figures['counter_fps_median']:.1f} fps x {per_frame} inferences/frame")
    print(f"  ratio (target >= 0.85)      {figures['ratio_median']:.3f}  runs: {figures['ratio_runs']}")
    print(f"  peak RSS (target <= 300 MB) {figures['peak_rss_mb_max']:.0f} MB")
    print(
        f"  latency read->published     p50 {figures['latency_p50_ms_median']:.1f} ms, "
        f"p95 {figures['latency_p95_ms_median']:.1f} ms (--no-realtime, queue wait included)"
    )
    print(
        f"  at real time (10 fps)       CPU {100 * figures['realtime_cpu_core_fraction']:.0f}% of one core "
        f"(target <= 50%); latency p50 {figures['realtime_latency_p50_ms']:.1f} ms, "
        f"p95 {figures['realtime_latency_p95_ms']:.1f} ms"
    )
    print(
        f"  encoder frozen (SIGSTOP)    {never_blocking['fps_encoder_stopped']:.1f} fps against "
        f"{never_blocking['fps_no_consumer']:.1f} fps with no consumer: ratio {never_blocking['ratio']:.3f} "
        f"(target >= 0.95)  runs: {never_blocking['ratio_runs']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
