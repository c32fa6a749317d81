"""The counting loop in process: what a stop does to the frames still being inferred."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from counter_process import make_state_dir, read_results

from people_counter.config import Config, InputConfig, StreamConfig
from people_counter.counting_loop import CountingLoop, RunOptions

pytestmark = pytest.mark.model


def test_a_stop_counts_the_frames_in_flight_and_leaves_no_request_running(
    tmp_path: Path, sample_video: Path, default_model_xml: Path
) -> None:
    config = Config(
        device_id="stop-test",
        state_dir=make_state_dir(tmp_path, default_model_xml),
        input=InputConfig(source=str(sample_video)),
        stream=StreamConfig(enabled=False),
    )
    results = tmp_path / "results.jsonl"
    loop = CountingLoop(config, RunOptions(results_path=results, realtime=False, mqtt_enabled=False))
    submitted: list[int] = []
    submit = loop.detector.submit

    def submit_then_stop(frame_index: int, frame_bgr: npt.NDArray[np.uint8]) -> None:
        submit(frame_index, frame_bgr)
        submitted.append(frame_index)
        if len(submitted) == 10:
            loop.signals.stop = True  # as SIGTERM's handler does, with this frame still being inferred

    loop.detector.submit = submit_then_stop  # type: ignore[method-assign]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        assert loop.run() == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert loop.detector.in_flight == 0
    assert [line["frame"] for line in read_results(results)] == submitted
