"""A camera's sub-stream (input.substream): the real counter, fed by the pinned ffmpeg serving the
sample video over HTTP at two sizes, counts the sub-stream when it is there and the main stream
when it is not; a sub-stream that is no stream URL is a one-line config error."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from counter_process import make_state_dir, read_results, write_config

from testsupport.helpers import free_port
from testsupport.live_stack import pinned_ffmpeg

MAIN_SIZE = (768, 576)  # the sample video's own size
SUB_SIZE = (384, 288)
HANG_S = 120.0
"""Bounds a hang only: a counter that works finishes in a few seconds."""


def _listening(port: int) -> bool:
    """Whether a socket listens on the loopback port, seen in /proc: a test connection would take
    the one client that `ffmpeg -listen 1` serves."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(wanted) and fields[3] == "0A":  # 0A: LISTEN
                    return True
    return False


@contextlib.contextmanager
def served(sample_video: Path, size: tuple[int, int], path: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The sample video as a camera serves it: MPEG-TS over HTTP, in real time, looping, at `size`.
    Yields its URL and the server, which is stopped by its PID."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/{path}"
    command = [str(pinned_ffmpeg()), "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1"]
    command += ["-i", str(sample_video), "-an", "-vf", f"scale={size[0]}:{size[1]}", "-c:v", "mpeg2video"]
    command += ["-q:v", "4", "-f", "mpegts", "-listen", "1", url]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + HANG_S
        while not _listening(port):
            assert server.poll() is None, f"ffmpeg exited: {server.stderr.read() if server.stderr else b''!r}"
            assert time.monotonic() < deadline, "ffmpeg never listened"
            time.sleep(0.05)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_counter(tmp_path: Path, state: Path, input_section: dict[str, object]) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp_path / "config.yml",
        {"state_dir": str(state), "stream": {"enabled": False}, "input": input_section},
    )
    results = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "people_counter.cli", "run", "-c", str(config), "--no-mqtt"]
    command += ["--results", str(results), "--max-frames", "20"]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=HANG_S)


def frame_sizes(tmp_path: Path) -> set[tuple[int, ...]]:
    lines = read_results(tmp_path / "results.jsonl")
    assert len(lines) == 20, f"{len(lines)} frames counted"
    return {tuple(line["frame_size"]) for line in lines}  # type: ignore[arg-type]


BACKOFF = {"reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}


def test_the_substream_is_counted_and_the_main_stream_left_alone(
    tmp_path: Path, sample_video: Path, default_model_xml: Path
) -> None:
    state = make_state_dir(tmp_path, default_model_xml)
    with (
        served(sample_video, MAIN_SIZE, "main") as (main_url, main_server),
        served(sample_video, SUB_SIZE, "sub") as (sub_url, _sub_server),
    ):
        done = run_counter(tmp_path, state, {"source": main_url, "substream": sub_url, **BACKOFF})
        assert done.returncode == 0, done.stderr
        assert frame_sizes(tmp_path) == {SUB_SIZE}
        # `-listen 1` serves one client and exits: the main stream's server never had one.
        assert main_server.poll() is None, "the main stream was opened"
    assert f"counting sub-stream {sub_url} (384x288" in done.stderr, done.stderr


def test_the_main_stream_is_counted_while_the_substream_is_not_there(
    tmp_path: Path, sample_video: Path, default_model_xml: Path
) -> None:
    state = make_state_dir(tmp_path, default_model_xml)
    login = tmp_path / "camera"
    login.write_text("viewer:s3cret-pw\n")
    sub_url = f"http://127.0.0.1:{free_port()}/sub"  # nothing listens there
    with served(sample_video, MAIN_SIZE, "main") as (main_url, _main_server):
        input_section = {"source": main_url, "substream": sub_url, "credentials_file": str(login), **BACKOFF}
        done = run_counter(tmp_path, state, input_section)
    assert done.returncode == 0, done.stderr
    assert frame_sizes(tmp_path) == {MAIN_SIZE}
    switched = [line for line in done.stderr.splitlines() if "is open and counted" in line]
    assert len(switched) == 1, done.stderr
    assert f"main stream {main_url}" in switched[0] and f"the sub-stream {sub_url} cannot be opened" in switched[0]
    assert "s3cret-pw" not in done.stderr


@pytest.mark.parametrize(
    ("substream", "expected"),
    [
        ("file:///var/lib/cam.mp4", "input.substream: Value error, unsupported URL scheme 'file'"),
        ("/dev/video1", "input.substream: Value error, not a URL"),
    ],
)
def test_a_substream_that_is_not_a_stream_url_is_a_one_line_config_error(
    tmp_path: Path, substream: str, expected: str
) -> None:
    config = write_config(
        tmp_path / "config.yml",
        {"state_dir": str(tmp_path), "input": {"source": "rtsp://192.0.2.9/main", "substream": substream}},
    )
    for command in (["check-config", str(config)], ["run", "-c", str(config), "--no-mqtt"]):
        done = subprocess.run(
            [sys.executable, "-m", "people_counter.cli", *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=HANG_S,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"people-counter: {config}: {expected} (expected rtsp, rtsps, http, https)"]
