"""The counting loop in process: what a stop does to the frames still being inferred, what a SIGHUP
reload changes, and the daily reset as the running loop's housekeeping does it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from counter_process import make_state_dir, read_results, run_in_process, write_config

from people_counter import counting_loop
from people_counter.config import Config, InputConfig, StreamConfig, load_config
from people_counter.counting_loop import CountingLoop, RateMeter, RunOptions
from people_counter.paths import database_path
from people_counter.stage_data import PersonTrack, TrackerOutput

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
    assert run_in_process(loop) == 0
    assert loop.detector.in_flight == 0
    assert [line["frame"] for line in read_results(results)] == submitted


# --- what the loop does between frames, fed tracks directly ------------------------------------------

HEIGHT = 150.0


def person(track_id: int, cx: float, feet_y: float, since: float = 100.0) -> PersonTrack:
    """A detected person (60 x 150 px) with their feet at (cx, feet_y), in view since `since`."""
    return PersonTrack(track_id, (cx - 30.0, feet_y - HEIGHT, cx + 30.0, feet_y), first_seen_ts=since)


def settings(state: Path, video: Path, **counting: object) -> dict[str, object]:
    return {
        "device_id": "loop-test",
        "state_dir": str(state),
        "input": {"source": str(video)},
        "stream": {"enabled": False},
        "counting": counting,
    }


@pytest.fixture
def make_loop(tmp_path: Path, default_model_xml: Path) -> Iterator[Callable[..., CountingLoop]]:
    """A CountingLoop over a config file (as the service has one), never run: the tests call its steps."""
    made: list[CountingLoop] = []
    state = make_state_dir(tmp_path, default_model_xml)

    def make(config_path: Path, clock: Callable[[], float] | None = None) -> CountingLoop:
        options = RunOptions(config_path=config_path, realtime=False, mqtt_enabled=False)
        config = load_config(config_path)
        loop = CountingLoop(config, options) if clock is None else CountingLoop(config, options, clock=clock)
        made.append(loop)
        return loop

    make.state = state  # type: ignore[attr-defined]
    yield make
    for loop in made:
        loop.store.close()


def test_a_reload_moves_the_line_and_changes_the_occupancy_threshold(
    tmp_path: Path, sample_video: Path, make_loop: Callable[..., CountingLoop]
) -> None:
    """SIGHUP's reload: a crossing counts on the new line, not the old one, and the occupancy alert
    fires at the new threshold. (768 x 576 frames: the old line is at y 288, the new one at 460.8.)"""
    state = make_loop.state  # type: ignore[attr-defined]
    config_file = write_config(tmp_path / "config.yml", settings(state, sample_video))
    loop = make_loop(config_file)
    assert loop.reader.frame_size == (768, 576)
    loop.counter.totals.total = 4  # counted before the reload: kept
    write_config(
        config_file,
        settings(state, sample_video, line=[[0.0, 0.8], [1.0, 0.8]], occupancy_max=1, occupancy_s=0.0),
    )

    loop._reload()

    assert loop.counter.line_px == ((0.0, pytest.approx(460.8)), (768.0, pytest.approx(460.8)))
    # Person 1 walks down from y 400 to 520, across the new line only; person 2 stands at y 300.
    a, b = person(1, 200.0, 400.0), person(2, 500.0, 300.0)
    loop._count(TrackerOutput(ts=100.0, visible=(a, b), confirmed=(a, b)))
    loop._count(TrackerOutput(ts=100.1, visible=(person(1, 200.0, 520.0), b)))

    assert (loop.counter.totals.in_count, loop.counter.totals.out_count) == (1, 0)
    assert loop.counter.totals.total == 4 + 2
    alerts = loop.store.recent_alerts()
    assert [(alert.type, alert.value, alert.threshold) for alert in alerts] == [("occupancy", 2.0, 1.0)]


def test_a_refused_reload_keeps_the_running_line(
    tmp_path: Path, sample_video: Path, make_loop: Callable[..., CountingLoop]
) -> None:
    state = make_loop.state  # type: ignore[attr-defined]
    config_file = write_config(tmp_path / "config.yml", settings(state, sample_video))
    loop = make_loop(config_file)
    write_config(config_file, settings(state, sample_video, line=[[0.0, 0.8], [1.0, 0.8]], occupancy_max=-1))

    loop._reload()

    assert loop.counter.line_px == ((0.0, 288.0), (768.0, 288.0))
    assert loop.config.counting.occupancy_max == 10


def local_ts(day: int, hour: int, minute: int, second: int) -> float:
    return dt.datetime(2026, 11, day, hour, minute, second).astimezone().timestamp()


def periods(state: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(f"file:{database_path(state)}?mode=ro", uri=True)
    try:
        return [(int(r[0]), str(r[1])) for r in db.execute("SELECT id, reason FROM resets ORDER BY id")]
    finally:
        db.close()


def test_the_daily_reset_fires_in_the_running_loop_once_a_day(
    tmp_path: Path, sample_video: Path, make_loop: Callable[..., CountingLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's housekeeping, on a clock the test moves: nothing before 03:00, a new count just
    after it (in the counter and in the store), nothing more that day, and again the next day."""
    state = make_loop.state  # type: ignore[attr-defined]
    config_file = write_config(tmp_path / "config.yml", settings(state, sample_video, daily_reset="03:00"))
    now = [local_ts(24, 2, 59, 0)]
    loop = make_loop(config_file, clock=lambda: now[0])
    # Housekeeping on every call, not once a second of real time: the test calls it when it means to.
    monkeypatch.setattr(counting_loop, "HOUSEKEEPING_INTERVAL_S", 0.0)

    def count_someone(track_id: int) -> None:
        someone = person(track_id, 100.0, 300.0, since=now[0])
        loop._count(TrackerOutput(ts=now[0], visible=(someone,), confirmed=(someone,)))

    count_someone(1)
    now[0] = local_ts(24, 2, 59, 59)
    loop._housekeeping()
    assert loop.counter.totals.total == 1
    assert loop.store.load()[0].total == 1
    assert periods(state) == [(1, "first start")]

    now[0] = local_ts(24, 3, 0, 1)
    loop._housekeeping()
    assert loop.counter.totals.total == 0
    assert loop.store.load()[0].total == 0
    assert periods(state) == [(1, "first start"), (2, "daily")]

    count_someone(2)
    for later in (local_ts(24, 3, 0, 2), local_ts(24, 12, 0, 0), local_ts(25, 2, 59, 59)):
        now[0] = later
        loop._housekeeping()
    assert loop.counter.totals.total == 1
    assert len(periods(state)) == 2

    now[0] = local_ts(25, 3, 0, 1)
    loop._housekeeping()
    assert loop.counter.totals.total == 0
    assert periods(state) == [(1, "first start"), (2, "daily"), (3, "daily")]


def test_a_reload_moves_the_daily_reset(
    tmp_path: Path, sample_video: Path, make_loop: Callable[..., CountingLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = make_loop.state  # type: ignore[attr-defined]
    config_file = write_config(tmp_path / "config.yml", settings(state, sample_video, daily_reset="03:00"))
    now = [local_ts(24, 2, 0, 0)]
    loop = make_loop(config_file, clock=lambda: now[0])
    monkeypatch.setattr(counting_loop, "HOUSEKEEPING_INTERVAL_S", 0.0)
    write_config(config_file, settings(state, sample_video, daily_reset="04:00"))
    loop._reload()
    now[0] = local_ts(24, 3, 0, 1)
    loop._housekeeping()
    assert periods(state) == [(1, "first start")]  # 03:00 is no longer the reset time
    now[0] = local_ts(24, 4, 0, 1)
    loop._housekeeping()
    assert periods(state) == [(1, "first start"), (2, "daily")]


def test_the_frame_rate_falls_to_zero_once_frames_stop() -> None:
    meter = RateMeter(window_s=5.0)
    for i in range(31):
        meter.tick(100.0 + i * 0.1)  # 10 frames a second for 3 s
    assert meter.fps(103.0) == pytest.approx(10.0)
    assert meter.fps(107.0) == pytest.approx(10.0)  # the last 1 s of frames is still in the window
    assert meter.fps(108.1) == 0.0  # no frame in the last 5 s
