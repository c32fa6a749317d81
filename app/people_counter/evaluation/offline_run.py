"""Counts a video for scoring: once through, as fast as it goes, touching nothing of the device's."""

from __future__ import annotations

from pathlib import Path

from people_counter.config import Config
from people_counter.counting_loop import RunOptions, run


def count_video(config: Config, video: str, workdir: Path, max_frames: int | None) -> Path:
    """Run the counter over `video` with `config`'s model, tracker and counting settings; returns
    the results file. Counts go to a fresh store in `workdir`: the device's totals stay as they
    are, and the run's total starts from zero. No MQTT, no live view, no looping, no real time."""
    once = config.model_copy(
        update={
            "input": config.input.model_copy(update={"loop": False}),
            "stream": config.stream.model_copy(update={"enabled": False}),
        }
    )
    results = workdir / "results.jsonl"
    options = RunOptions(
        input_override=video,
        results_path=results,
        realtime=False,
        mqtt_enabled=False,
        max_frames=max_frames,
        store_dir=workdir,
    )
    run(once, options)
    return results
