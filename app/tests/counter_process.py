"""Run the real `people-counter` command in a child process, as systemd would, for the end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from people_counter.counting_loop import CountingLoop


def make_state_dir(base: Path, model_xml: Path) -> Path:
    """A fresh state directory (new SQLite) that shares the prepared model."""
    state = base / "state"
    state.mkdir(parents=True, exist_ok=True)
    models = state / "models"
    if not models.exists():
        models.symlink_to(model_xml.parent.parent)
    return state


def write_config(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def read_results(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the last line of a killed run may be cut short
    return lines


def run_in_process(loop: CountingLoop) -> int:
    """loop.run() in this process, with the signal handlers it installs put back afterwards."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return loop.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


class CounterProcess:
    def __init__(self, config: Path, *extra: str) -> None:
        self.log_path = config.with_suffix(f".{time.monotonic_ns()}.log")
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "people_counter.cli", "run", "-c", str(config), *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return predicate()
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the counter did not exit within {timeout_s} s:\n{self.log()[-3000:]}") from None

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self._log.close()
