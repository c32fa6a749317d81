"""The counter as systemd runs it: sd_notify readiness and watchdog, SIGHUP reload, reset, daily reset."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from counter_process import CounterProcess, make_state_dir, read_results, write_config

from people_counter.counting.daily_reset import DailyReset
from people_counter.paths import database_path
from testsupport.store_queries import stored_events


class NotifySocket:
    """The receiving end of sd_notify, as systemd's manager holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, prefix: str, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages:
                if any(line.startswith(prefix) for line in message.splitlines()):
                    return message
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
        # READY comes once the model is compiled and the input is open: frames follow at once.
        assert counter.wait_until(lambda: len(read_results(results)) > 0, 10)
        watchdog = notify.wait_for("WATCHDOG=1", 5)
        assert watchdog is not None and "fps" in watchdog

        assert counter.wait_until(lambda: int((read_results(results) or [{"total": 0}])[-1]["total"]) >= 3, 60)

        # A bad config on reload is refused; the running one stays and so do the counts.
        write_config(config, {**settings, "counting": {"occupancy_max": -1}})
        counter.process.send_signal(signal.SIGHUP)
        assert counter.wait_until(lambda: "reload refused" in counter.log(), 10), counter.log()[-2000:]
        before = int(read_results(results)[-1]["total"])

        # A good one is taken without losing counts.
        write_config(config, {**settings, "counting": {"line": [[0.0, 0.6], [1.0, 0.6]]}})
        counter.process.send_signal(signal.SIGHUP)
        assert counter.wait_until(lambda: "reloaded" in counter.log(), 10), counter.log()[-2000:]
        time.sleep(1.0)
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
        assert counter.wait_until(lambda: "count reset" in counter.log(), 5), counter.log()[-2000:]
        time.sleep(0.5)
        totals = [int(line["total"]) for line in read_results(results)]
        drops = [(a, b) for a, b in itertools.pairwise(totals) if b < a]
        # One drop, to zero (or to the one person confirmed on the very frame after it).
        assert len(drops) == 1 and drops[0][1] <= 1, drops
        events = stored_events(database_path(state), limit=100)
        assert len(events) >= before, "the history before the reset is gone"
    finally:
        counter.terminate()
        counter.wait(10)
        counter.close()
        notify.close()


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
