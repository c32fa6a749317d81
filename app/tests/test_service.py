"""The counter as systemd runs it: sd_notify readiness and watchdog, SIGHUP reload, reset, daily reset."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from counter_process import CounterProcess, make_state_dir, read_results, write_config

from people_counter.counting.daily_reset import DailyReset
from people_counter.paths import database_path
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available, subscribe_collect
from testsupport.store_queries import stored_events

HANG_S = 30.0
"""Waits in this file only bound a hang: a test waits for what it expects, never for it to happen
within a span of time. 30 s is also systemd's WatchdogSec for the counter: a watchdog later than
that gets the service killed."""


def frames_after(results: Path, frames: int) -> Callable[[], bool]:
    """A condition: `frames` more frames have been counted than now."""
    start = len(read_results(results))
    return lambda: len(read_results(results)) >= start + frames


class NotifySocket:
    """The receiving end of sd_notify, as systemd's manager holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def matching(self, prefix: str) -> list[str]:
        return [m for m in self.messages if any(line.startswith(prefix) for line in m.splitlines())]

    def wait_for(self, prefix: str, timeout_s: float = HANG_S, count: int = 1) -> str | None:
        """The count-th message with a line starting with `prefix`, received by now or before the
        timeout (which only bounds a hang); None if it never came."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.matching(prefix)
            if len(found) >= count:
                return found[count - 1]
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return None

    def close(self) -> None:
        self.sock.close()


@pytest.mark.model
def test_ready_watchdog_reload_and_reset(tmp_path: Path, sample_video: Path, default_model_xml: Path) -> None:
    state = make_state_dir(tmp_path, default_model_xml)
    settings: dict[str, object] = {
        "state_dir": str(state),
        "input": {"source": str(sample_video), "loop": True},
        "stream": {"enabled": False},
    }
    config = write_config(tmp_path / "config.yml", settings)
    results = tmp_path / "results.jsonl"
    notify = NotifySocket(tmp_path / "notify.sock")
    os.environ["NOTIFY_SOCKET"] = str(notify.path)
    try:
        counter = CounterProcess(config, "--no-mqtt", "--results", str(results))
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        ready = notify.wait_for("READY=1", 60)
        assert ready is not None, counter.log()[-3000:]
        assert counter.wait_until(lambda: len(read_results(results)) > 0, HANG_S)
        # The watchdog is fed again and again, not once.
        watchdog = notify.wait_for("WATCHDOG=1", count=3)
        assert watchdog is not None and "fps" in watchdog

        assert counter.wait_until(lambda: int((read_results(results) or [{"total": 0}])[-1]["total"]) >= 3, 60)

        # A bad config on reload is refused; the running one stays and so do the counts.
        write_config(config, {**settings, "counting": {"occupancy_max": -1}})
        counter.process.send_signal(signal.SIGHUP)
        assert counter.wait_until(lambda: "reload refused" in counter.log(), HANG_S), counter.log()[-2000:]
        before = int(read_results(results)[-1]["total"])

        # A good one is taken without losing counts.
        write_config(config, {**settings, "counting": {"line": [[0.0, 0.6], [1.0, 0.6]]}})
        counter.process.send_signal(signal.SIGHUP)
        assert counter.wait_until(lambda: "reloaded" in counter.log(), HANG_S), counter.log()[-2000:]
        # It goes on counting with the new config (a counter that died on it counts no more frames).
        assert counter.wait_until(frames_after(results, 20), HANG_S), counter.log()[-2000:]
        assert counter.process.poll() is None
        assert int(read_results(results)[-1]["total"]) >= before

        # `people-counter reset` from another process starts a new count while it runs.
        done = subprocess.run(
            [sys.executable, "-m", "people_counter.cli", "reset", "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert counter.wait_until(lambda: "count reset" in counter.log(), HANG_S), counter.log()[-2000:]
        assert counter.wait_until(frames_after(results, 5), HANG_S), counter.log()[-2000:]
        totals = [int(line["total"]) for line in read_results(results)]
        drops = [(a, b) for a, b in itertools.pairwise(totals) if b < a]
        # One drop, to zero (or to the one person confirmed on the very frame after it).
        assert len(drops) == 1 and drops[0][1] <= 1, drops
        events = stored_events(database_path(state), limit=100)
        assert len(events) >= before, "the history before the reset is gone"
    finally:
        counter.terminate()
        counter.wait(HANG_S)
        counter.close()
        notify.close()


@pytest.mark.model
@pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto")
def test_an_input_missing_at_start_is_waited_for_and_counted_once_it_appears(
    tmp_path: Path, sample_video: Path, default_model_xml: Path
) -> None:
    """The camera that boots after the device: READY and the watchdog at once, `input:
    reconnecting` in a state sent every second (the heartbeat is 5 s), then counting."""
    late = tmp_path / "mount" / "video.avi"
    with MosquittoBroker(devices=("late",)) as broker:
        password = tmp_path / "mqtt-password"
        password.write_text(broker.users["counter"] + "\n")
        settings: dict[str, object] = {
            "device_id": "late",
            "state_dir": str(make_state_dir(tmp_path, default_model_xml)),
            "input": {"source": str(late), "loop": True, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": "counter",
                "password_file": str(password),
                "heartbeat_s": 5.0,
            },
            "stream": {"enabled": False},
        }
        config = write_config(tmp_path / "config.yml", settings)
        states = subscribe_collect(
            broker.host, broker.port, "dashboard", broker.users["dashboard"], ["people_counter/late/state"]
        )
        notify = NotifySocket(tmp_path / "notify.sock")
        os.environ["NOTIFY_SOCKET"] = str(notify.path)
        try:
            counter = CounterProcess(config)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            assert notify.wait_for("READY=1", 60) is not None, counter.log()[-3000:]
            assert notify.wait_for("WATCHDOG=1", count=3) is not None

            def down() -> list[dict[str, object]]:
                found = [json.loads(m.text) for m in states.on_topic("people_counter/late/state")]
                return [state for state in found if state["input"] == "reconnecting"]

            assert counter.wait_until(lambda: len(down()) >= 9, 60), counter.log()[-3000:]
            waiting = down()
            assert all(state["fps"] == 0 and state["store"] == "ok" for state in waiting), waiting
            # Sent every second: the heartbeat alone would space them 5 s. The gaps are read on the
            # counter's own clock (input_down_s), and counted, not judged by the longest: a loaded
            # machine can hold the counter's loop up now and then, but not for two gaps in eight,
            # while a state sent on the heartbeat alone makes every gap 5 s.
            gaps = [b["input_down_s"] - a["input_down_s"] for a, b in itertools.pairwise(waiting)]  # type: ignore[operator]
            assert sum(gap >= 2.5 for gap in gaps) <= len(gaps) // 4, gaps
            assert waiting[-1]["input_down_s"] > waiting[0]["input_down_s"], gaps
            assert counter.process.poll() is None

            late.parent.mkdir()
            shutil.copy(sample_video, late.with_suffix(".part"))
            late.with_suffix(".part").rename(late)

            def counting() -> bool:
                found = [json.loads(m.text) for m in states.on_topic("people_counter/late/state")]
                return any(s["input"] == "ok" and s["input_down_s"] == 0 and s["fps"] > 0 for s in found)

            assert counter.wait_until(counting, 60), counter.log()[-3000:]
            counter.terminate()
            assert counter.wait(HANG_S) == 0
            log = counter.log()
            assert "Traceback" not in log
            assert "video.avi does not exist (yet); retrying in" in log and "video.avi is open" in log
        finally:
            counter.close()
            notify.close()
            states.stop()


def test_daily_reset_fires_once_a_day() -> None:
    local = dt.datetime(2026, 11, 24, 2, 59, 0).astimezone()
    schedule = DailyReset(dt.time(3, 0), now=local.timestamp())
    assert not schedule.due(local.timestamp())
    assert not schedule.due((local + dt.timedelta(seconds=59)).timestamp())
    assert schedule.due((local + dt.timedelta(seconds=61)).timestamp())
    assert not schedule.due((local + dt.timedelta(minutes=5)).timestamp())
    assert schedule.due((local + dt.timedelta(days=1, seconds=61)).timestamp())


def test_no_daily_reset_when_not_configured() -> None:
    assert not DailyReset(None).due(time.time() + 10 * 86400)
