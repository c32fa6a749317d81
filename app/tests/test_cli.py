"""Bad input to the real command: one line that names the problem, its exit status, no traceback."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from counter_process import make_state_dir


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "people_counter.cli", *args], capture_output=True, text=True, check=False, timeout=120
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], expected: str, status: int) -> None:
    assert done.returncode == status, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("people-counter:")]
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def config_in(tmp_path: Path, state: Path) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(f"state_dir: {state}\nstream: {{enabled: false}}\n")
    return config


def test_missing_input_file(tmp_path: Path) -> None:
    done = run_cli("run", "-c", str(config_in(tmp_path, tmp_path)), "--no-mqtt", "--input", str(tmp_path / "x.mp4"))
    assert_one_line_error(done, "x.mp4 does not exist", 3)


def test_input_that_is_not_a_video(tmp_path: Path, default_model_xml: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 1000)
    state = make_state_dir(tmp_path, default_model_xml)
    done = run_cli("run", "-c", str(config_in(tmp_path, state)), "--no-mqtt", "--input", str(junk))
    assert_one_line_error(done, "junk.mp4", 3)


@pytest.mark.model
def test_missing_model(tmp_path: Path, sample_video: Path) -> None:
    empty_state = tmp_path / "state"
    done = run_cli("run", "-c", str(config_in(tmp_path, empty_state)), "--no-mqtt", "--input", str(sample_video))
    assert_one_line_error(done, "people-counter model prepare", 4)


def test_missing_mqtt_password_file(tmp_path: Path, default_model_xml: Path, sample_video: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        f"state_dir: {make_state_dir(tmp_path, default_model_xml)}\nstream: {{enabled: false}}\n"
        f"mqtt: {{username: counter, password_file: {tmp_path / 'nope'}}}\n"
    )
    done = run_cli("run", "-c", str(config), "--input", str(sample_video), "--max-frames", "5")
    assert_one_line_error(done, "nope", 2)


@pytest.mark.parametrize(
    "command", [[], ["run"], ["eval"], ["check-config"], ["model"], ["model", "prepare"], ["sample"], ["reset"]]
)
def test_every_command_prints_its_version(command: list[str]) -> None:
    done = run_cli(*command, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"people-counter {importlib.metadata.version('people-counter')}\n"


def test_an_unexpected_failure_is_one_line_and_status_1_with_the_traceback_only_when_verbose(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    for verbose in ([], ["--verbose"]):
        done = run_cli(*verbose, "reset", "-c", str(config_in(tmp_path, state)))
        assert done.returncode == 1, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("people-counter:")]
        assert len(lines) == 1 and "unexpected error" in lines[0], done.stderr
        assert ("Traceback" in done.stderr) == bool(verbose), done.stderr
