"""Track ids after a restart: they continue from the last one used, never start again at 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from counter_process import make_state_dir, read_results, run_in_process

from people_counter.config import Config, InputConfig, StreamConfig
from people_counter.counting_loop import CountingLoop, RunOptions
from people_counter.paths import database_path
from testsupport.store_queries import stored_events

pytestmark = pytest.mark.model

FRAMES = 120
"""Twelve seconds of the sample video: several people are confirmed in it."""


def ids_of_a_run(state: Path, video: Path, results: Path) -> list[int]:
    """Count the first FRAMES frames of the video in the store at `state`; the track ids seen."""
    config = Config(
        device_id="restart-ids",
        state_dir=state,
        input=InputConfig(source=str(video)),
        stream=StreamConfig(enabled=False),
    )
    options = RunOptions(results_path=results, realtime=False, mqtt_enabled=False, max_frames=FRAMES)
    assert run_in_process(CountingLoop(config, options)) == 0
    return sorted({int(track["id"]) for line in read_results(results) for track in line["tracks"]})


def test_track_ids_continue_after_a_restart(tmp_path: Path, sample_video: Path, default_model_xml: Path) -> None:
    """The same clip counted twice in one state directory, as a counter stopped and started again:
    the second run's ids are all above the first run's, in the results and in the store."""
    state = make_state_dir(tmp_path, default_model_xml)
    first = ids_of_a_run(state, sample_video, tmp_path / "first.jsonl")
    first_events = {event.track_id for event in stored_events(database_path(state))}
    second = ids_of_a_run(state, sample_video, tmp_path / "second.jsonl")
    second_events = {event.track_id for event in stored_events(database_path(state))} - first_events

    assert len(first) >= 2 and len(second) >= 2, (first, second)  # people were counted both times
    assert min(second) > max(first), (first, second)
    assert second_events and min(second_events) > max(first_events), (first_events, second_events)
