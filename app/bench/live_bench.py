"""Live-view benchmark: latency, never-blocking, viewers' cost, encoder and dashboard CPU.

Each function starts the real pieces on loopback (FrameSink in this process, the stream
encoder with the pinned ffmpeg, the dashboard), measures, stops them by PID and returns a
dict of figures. Nothing here asserts a time: `python -m bench.live_bench` (from app/) prints them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil

from people_counter import paths
from people_counter.outputs.annotate import annotate_frame
from people_counter.outputs.frame_sink import FrameSink
from people_counter.stage_data import CounterState, PersonTrack
from testsupport.live_stack import LivePair, MjpegViewer, short_tmp

WIDTH, HEIGHT = 768, 576


def sample_frames(n: int = 100) -> list[np.ndarray]:
    """Frames of the sample video when cached (realistic JPEG sizes), else textured noise."""
    import cv2

    frames: list[np.ndarray] = []
    video = paths.sample_video_path()
    if video.exists():
        cap = cv2.VideoCapture(str(video))
        while len(frames) < n:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    rng = np.random.default_rng(0)
    while len(frames) < n:
        frames.append(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    return frames


def _annotated(frame: np.ndarray, i: int) -> np.ndarray:
    tracks = [PersonTrack(k, (60.0 + 90 * k, 200.0, 110.0 + 90 * k, 330.0), 0.0) for k in range(4)]
    state = CounterState(4, i, i // 2, i // 3, 12.0, 10.0, 8.0, 0, "ok", float(i), time.time())
    return annotate_frame(frame, tracks, ((0, 288), (WIDTH, 288)), state, True, WIDTH)


class Feeder:
    """Plays the counter: offers annotated frames at a fixed rate from a thread."""

    def __init__(self, sink: FrameSink, fps: float, frames: list[np.ndarray]) -> None:
        self.sink, self.fps, self.frames = sink, fps, frames
        self.offered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_t = time.monotonic()
        while not self._stop.is_set():
            frame = _annotated(self.frames[self.offered % len(self.frames)], self.offered)
            self.sink.offer(frame)
            self.offered += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def live(fps: float = 10.0) -> Iterator[tuple[LivePair, FrameSink, str]]:
    """The stream encoder and the dashboard (no broker needed for video), and a logged-in cookie."""
    with short_tmp("pc-bench-") as run, LivePair(run, None, fps=fps, width=WIDTH) as pair:
        sink = FrameSink(pair.frame_socket, fps)
        try:
            yield pair, sink, pair.login()
        finally:
            sink.close()


def _wait_video(pair: LivePair, cookie: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = pair.get("/api/state", cookie)
        if status == 200 and json.loads(body)["encoder"]["video"]:
            return
        time.sleep(0.1)
    raise RuntimeError("the video never started")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def glass_to_browser_latency(seconds: float = 10.0, fps: float = 10.0) -> dict[str, Any]:
    """From FrameSink.offer() (the frame leaves the counter) to the whole JPEG at an HTTP viewer.

    Each part of the MJPEG stream carries the offer() time of its source frame
    (X-Frame-Ts), so every received frame is measured, over loopback, on one clock.
    """
    frames = sample_frames()
    with live(fps) as (pair, sink, cookie):
        feeder = Feeder(sink, fps, frames)
        try:
            _wait_video(pair, cookie)
            viewer = MjpegViewer(pair.url, cookie)
            time.sleep(seconds)
            viewer.close()
        finally:
            feeder.stop()
        latencies = [(arrived - ts) * 1000 for _, ts, arrived, _ in viewer.received if ts > 0]
        sizes = [n for *_, n in viewer.received]
    if not latencies:
        return {"error": "no frames received"}
    return {
        "frames_received": len(latencies),
        "fps": fps,
        "latency_ms_p50": round(_percentile(latencies, 0.50), 1),
        "latency_ms_p95": round(_percentile(latencies, 0.95), 1),
        "latency_ms_max": round(max(latencies), 1),
        "jpeg_kb_mean": round(statistics.mean(sizes) / 1024, 1),
    }


def _producer_fps(sink: FrameSink, frames: list[np.ndarray], seconds: float, work_ms: float) -> dict[str, float]:
    """A counting loop stand-in: annotate, offer, then `work_ms` of CPU (detection and tracking)."""
    n = 0
    offer_times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        frame = _annotated(frames[n % len(frames)], n)
        t0 = time.perf_counter()
        sink.offer(frame)
        offer_times.append(time.perf_counter() - t0)
        spin_until = time.perf_counter() + work_ms / 1000
        while time.perf_counter() < spin_until:
            pass
        n += 1
    elapsed = time.perf_counter() - start
    return {
        "fps": n / elapsed,
        "offer_ms_max": max(offer_times) * 1000,
        "offer_ms_p99": _percentile(offer_times, 0.99) * 1000,
    }


def _stop_encoder(pair: LivePair, sig: signal.Signals) -> None:
    """SIGSTOP/SIGCONT the stream program and its ffmpeg (by their PIDs)."""
    parent = psutil.Process(pair.stream.pid)
    for proc in [parent, *parent.children(recursive=True)]:
        os.kill(proc.pid, sig)


def non_blocking_ratio(seconds: float = 5.0, work_ms: float = 10.0) -> dict[str, Any]:
    """The producer's fps with the encoder SIGSTOPped, against the same loop with no consumer at all."""
    frames = sample_frames(50)
    with short_tmp("pc-bench-") as run:
        alone = FrameSink(run / "alone.sock", 10.0)
        try:
            _producer_fps(alone, frames, 1.0, work_ms)  # warm-up: caches, CPU frequency
            no_consumer = _producer_fps(alone, frames, seconds, work_ms)
        finally:
            alone.close()
    with live() as (pair, sink, cookie):
        Feeder(sink, 10.0, frames).stop()  # connect the encoder with a first frame
        deadline = time.monotonic() + 10
        while not sink.connected and time.monotonic() < deadline:
            sink.offer(_annotated(frames[0], 0))
            time.sleep(0.05)
        running = _producer_fps(sink, frames, seconds, work_ms)
        sent_running = sink.sent
        _stop_encoder(pair, signal.SIGSTOP)
        try:
            dropped_before = sink.dropped
            stopped = _producer_fps(sink, frames, seconds, work_ms)
            dropped_stopped = sink.dropped - dropped_before
        finally:
            _stop_encoder(pair, signal.SIGCONT)
        sent_before = sink.sent
        _producer_fps(sink, frames, 2.0, work_ms)
        resumed_sent = sink.sent - sent_before
        _wait_video(pair, cookie)
    return {
        "work_ms_per_frame": work_ms,
        "fps_no_consumer": round(no_consumer["fps"], 1),
        "fps_encoder_running": round(running["fps"], 1),
        "fps_encoder_sigstopped": round(stopped["fps"], 1),
        "ratio_stopped_vs_no_consumer": round(stopped["fps"] / no_consumer["fps"], 3),
        "offer_ms_max_stopped": round(stopped["offer_ms_max"], 3),
        "offer_ms_p99_stopped": round(stopped["offer_ms_p99"], 3),
        "frames_sent_while_running": sent_running,
        "frames_dropped_while_stopped": dropped_stopped,
        "frames_sent_after_resume_2s": resumed_sent,
    }


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _cpu_percent(procs: Callable[[], list[psutil.Process]], seconds: float) -> float:
    """Percent of one core used by procs over a window."""
    before = _cpu_seconds(procs())
    t0 = time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(procs()) - before) / (time.monotonic() - t0)


def viewers_and_cpu(viewers: int = 10, fps: float = 10.0, window_s: float = 8.0) -> dict[str, Any]:
    """Dashboard CPU with 1 and with N viewers (per extra viewer), drops, and encoder CPU at `fps`."""
    frames = sample_frames()
    with live(fps) as (pair, sink, cookie):
        feeder = Feeder(sink, fps, frames)
        try:
            _wait_video(pair, cookie)
            dashboard = psutil.Process(pair.dashboard.pid)
            stream = psutil.Process(pair.stream.pid)

            def encoder_procs() -> list[psutil.Process]:
                return [stream, *stream.children(recursive=True)]

            def ffmpeg_procs() -> list[psutil.Process]:
                return [p for p in stream.children(recursive=True) if p.name() == "ffmpeg"]

            idle = _cpu_percent(lambda: [dashboard], window_s)
            first = MjpegViewer(pair.url, cookie)
            time.sleep(1.0)
            one = _cpu_percent(lambda: [dashboard], window_s)
            encoder_before = _cpu_seconds(encoder_procs())
            ffmpeg_before = _cpu_seconds(ffmpeg_procs())
            t0 = time.monotonic()
            others = [MjpegViewer(pair.url, cookie) for _ in range(viewers - 1)]
            time.sleep(1.0)
            sink_dropped_before, offered_before = sink.dropped, feeder.offered
            counts_before = [len(v.received) for v in [first, *others]]
            many = _cpu_percent(lambda: [dashboard], window_s)
            counts = [len(v.received) - b for v, b in zip([first, *others], counts_before, strict=True)]
            offered = feeder.offered - offered_before
            sink_dropped = sink.dropped - sink_dropped_before
            elapsed = time.monotonic() - t0
            encoder_cpu = 100 * (_cpu_seconds(encoder_procs()) - encoder_before) / elapsed
            ffmpeg_cpu = 100 * (_cpu_seconds(ffmpeg_procs()) - ffmpeg_before) / elapsed
            for v in [first, *others]:
                v.close()
        finally:
            feeder.stop()
    return {
        "fps": fps,
        "viewers": viewers,
        "dashboard_cpu_pct_no_viewer": round(idle, 2),
        "dashboard_cpu_pct_1_viewer": round(one, 2),
        f"dashboard_cpu_pct_{viewers}_viewers": round(many, 2),
        "dashboard_cpu_pct_per_extra_viewer": round((many - one) / max(1, viewers - 1), 3),
        "encoder_cpu_pct_total": round(encoder_cpu, 2),
        "encoder_cpu_pct_ffmpeg": round(ffmpeg_cpu, 2),
        "frames_offered_in_window": offered,
        "frames_dropped_by_sink_in_window": sink_dropped,
        "frames_per_viewer_min": min(counts),
        "frames_per_viewer_max": max(counts),
        "viewer_frames_missed_max": max(0, offered - sink_dropped - min(counts)),
    }


def main() -> int:
    results: dict[str, Any] = {}
    for name, fn in (
        ("glass_to_browser_latency", glass_to_browser_latency),
        ("non_blocking", non_blocking_ratio),
        ("viewers_and_cpu", viewers_and_cpu),
    ):
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = fn()
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
