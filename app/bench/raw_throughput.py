"""The model's raw speed on this machine: the yardstick the benchmark holds the counter to.

An in-process AsyncInferQueue loop, on real frames of the sample video, with the very
compile settings of the detector (detector.compile_config), so that the ratio of the
counter's inferences per second to this figure measures the counter's own overhead.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from people_counter import paths
from people_counter.prepare.model import import_openvino
from people_counter.vision.detector import load_model, preprocess, tile_grid

ov = import_openvino()


def sample_tensors(model_xml: Path, device: str, count: int = 16) -> list[npt.NDArray[Any]]:
    """Model inputs made from `count` frames spread over the sample video, the detector's way."""
    _, layout = load_model(model_xml, device)
    capture = cv2.VideoCapture(str(paths.sample_video_path()))
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or count
        wanted = set(np.linspace(0, total - 1, count).astype(int).tolist())
        tensors: list[npt.NDArray[Any]] = []
        index = 0
        while len(tensors) < len(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                tile = tile_grid(frame.shape[1], frame.shape[0], "none")[0]
                tensors.append(preprocess(frame, tile, layout))
            index += 1
    finally:
        capture.release()
    if not tensors:
        raise RuntimeError(f"no frames could be read from {paths.sample_video_path()}")
    return tensors


def measure_raw_throughput(
    model_xml: Path,
    device: str,
    seconds: float = 5.0,
    *,
    infer_requests: int | None = None,
    tensors: list[npt.NDArray[Any]] | None = None,
) -> dict[str, float]:
    """Run the model flat out for `seconds` and report its speed.

    `infer_requests` None uses the device's optimal number of requests, which is what
    "raw throughput" means. Returns inferences_per_s, latency_ms_p50 (start to callback
    of each request), cpu_ms_per_inference (process CPU time, all threads), requests and
    inferences.
    """
    compiled, _ = load_model(model_xml, device)
    inputs = tensors if tensors is not None else sample_tensors(model_xml, device)
    requests = infer_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    latencies: list[float] = []

    def on_done(_request: Any, started: float) -> None:
        latencies.append((time.perf_counter() - started) * 1000.0)

    queue.set_callback(on_done)
    # Warm up: the first inferences of a fresh compiled model are slower.
    for tensor in inputs[: requests * 2]:
        queue.start_async({0: tensor}, time.perf_counter())
    queue.wait_all()
    latencies.clear()

    submitted = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    deadline = wall0 + seconds
    while time.perf_counter() < deadline:
        queue.get_idle_request_id()
        queue.start_async({0: inputs[submitted % len(inputs)]}, time.perf_counter())
        submitted += 1
    queue.wait_all()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "inferences_per_s": submitted / wall,
        "latency_ms_p50": statistics.median(latencies) if latencies else float("nan"),
        "cpu_ms_per_inference": cpu * 1000.0 / max(submitted, 1),
        "requests": float(requests),
        "inferences": float(submitted),
    }
