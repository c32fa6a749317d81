"""Video input: clear errors for bad files, and a dropped stream that comes back by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from people_counter.errors import ConfigError, InputError
from people_counter.vision import source as source_module
from people_counter.vision.source import FrameReader, parse_input, parse_substream

APP_DIR = Path(__file__).resolve().parents[1]


def reader_for(source: str, **kwargs: object) -> FrameReader:
    options: dict[str, object] = {
        "loop": False,
        "realtime": False,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 0.5,
    }
    options.update(kwargs)
    return FrameReader(parse_input(source), **options)  # type: ignore[arg-type]


def waiting_reader(source: str, **kwargs: object) -> FrameReader:
    """A reader as the service makes it: an input that is not there is waited for."""
    options: dict[str, object] = {"loop": False, "realtime": False, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}
    options.update(kwargs)
    return FrameReader(parse_input(source, must_exist=False), wait=True, **options)  # type: ignore[arg-type]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input file .*nope.avi does not exist"):
        parse_input(str(tmp_path / "nope.avi"))


def test_a_directory_is_not_an_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a file"):
        parse_input(str(tmp_path))


UNREADABLE_CHILD = """
import os, sys
from people_counter.errors import ConfigError, InputError
from people_counter.vision.source import parse_input
assert not os.access(sys.argv[1], os.R_OK), "the file is readable: privileges were not dropped"
try:
    parse_input(sys.argv[1])
except InputError as error:
    print(error)
"""


def test_unreadable_file_is_a_clear_error() -> None:
    """As a user who may not read the file. Run as root (CI is), the check runs in a child that
    setpriv has made `nobody`, since root reads a mode-0 file."""
    # pytest's tmp_path sits under a private directory; `nobody` needs a path it can reach.
    with tempfile.TemporaryDirectory(prefix="source-ro-", dir="/var/tmp") as top:
        Path(top).chmod(0o755)
        path = Path(top) / "locked.avi"
        path.write_bytes(b"x")
        path.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(InputError, match="not readable"):
                parse_input(str(path))
            return
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
        done = subprocess.run(
            [*command, UNREADABLE_CHILD, str(path)],
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "not readable" in done.stdout, done.stdout


def test_a_text_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.avi"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(InputError, match=r"notes.avi: (not a video|no frame)"):
        reader_for(str(path))


def write_clip(path: Path, fps: float, frames: int) -> Path:
    """A small MJPEG clip of grey frames, each a shade lighter than the one before."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 2, np.uint8))
    writer.release()
    return path


def test_frames_wider_than_max_width_are_scaled_once_at_decoding(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "tiny.avi", 10.0, 3)  # 64x48
    reader = reader_for(str(path), max_width=32)
    assert reader.frame_size == (32, 24)
    reader.start()
    deadline = time.monotonic() + 10
    shapes = []
    while not reader.finished and time.monotonic() < deadline:
        frame = reader.get(timeout=0.1)
        if frame is not None:
            shapes.append(frame.image.shape)
    reader.stop()
    assert shapes == [(24, 32, 3)] * 3
    assert reader_for(str(path), max_width=640).frame_size == (64, 48)  # never scaled up


class StandingWallClock:
    """The source module's `time`, with a wall clock that stands still at `now` (monotonic and the
    rest are the real ones): a file played in real time hands out only the frames due by then."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_file_played_in_real_time_from_a_later_frame_starts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A looping file resuming after a restart starts from frame N: its clock starts at its first
    frame read, so it does not wait N frames first (it waited, and a device killed every 30 s at
    frame 500 never counted again)."""
    path = write_clip(tmp_path / "tiny.avi", 10.0, 50)
    monkeypatch.setattr(source_module, "time", StandingWallClock(5000.0))
    reader = reader_for(str(path), realtime=True, start_frame=40)
    reader.start()
    first = reader.get(timeout=30)  # the timeout only bounds a hang
    reader.stop()
    assert first is not None and first.index == 40
    # Due at the wall clock's present, not 40 frames (4 s) after it.
    assert first.ts == 5000.0


def test_a_file_is_read_whole_and_in_order(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "tiny.avi", 10.0, 25)
    reader = reader_for(str(path))
    assert reader.frame_size == (64, 48)
    reader.start()
    seen = []
    deadline = time.monotonic() + 10
    while not reader.finished and time.monotonic() < deadline:
        frame = reader.get(timeout=0.1)
        if frame is not None:
            seen.append(frame)
    reader.stop()
    assert [f.index for f in seen] == list(range(25))
    # The file's own clock: 10 fps means 0.1 s between frames whatever the speed of reading.
    assert seen[10].ts - seen[0].ts == pytest.approx(1.0)
    assert reader.status == "ended"


def test_a_file_in_real_time_skips_what_it_fell_behind_on(tmp_path: Path) -> None:
    """Like a camera: a busy spell of counting costs frames (counted), not a lasting lag."""
    path = write_clip(tmp_path / "clip.avi", 20.0, 100)
    reader = reader_for(str(path), realtime=True)
    reader.start()
    try:
        assert wait_for(lambda: reader.get(timeout=0.1) is not None, 5)
        time.sleep(2.5)  # counting stalls; the clip's clock runs on
        seen = []
        while not reader.finished:
            frame = reader.get(timeout=0.1)
            if frame is not None:
                seen.append((frame, time.time()))
    finally:
        reader.stop()
    assert reader.dropped > 0
    indexes = [frame.index for frame, _ in seen]
    assert indexes == sorted(indexes) and indexes[-1] == 99
    # Once the backlog in the queue is out, frames are at most about a second late. Counted, not the
    # single latest: a frame is late by the reader's lag plus any pause of this test's thread, and a
    # loaded machine pauses a thread now and then, but not for one frame in five; a reader that keeps
    # its backlog has every frame after the stall 2.5 s late or more.
    late = [got - frame.ts for frame, got in seen[8:]]
    assert sum(lag > 1.5 for lag in late) <= len(late) // 5, late


def test_a_slow_consumer_of_a_file_in_real_time_gets_the_newest_frames(tmp_path: Path) -> None:
    """As from a camera: the frames handed out are the newest ones, not a queue of old ones."""
    path = write_clip(tmp_path / "clip.avi", 20.0, 80)
    reader = reader_for(str(path), realtime=True)
    reader.start()
    late = []
    try:
        while not reader.finished:
            frame = reader.get(timeout=0.1)
            if frame is not None:
                late.append(time.time() - frame.ts)
                time.sleep(0.3)  # counting one frame takes six of the file's frame times
    finally:
        reader.stop()
    assert reader.dropped > 0
    # The queue holds 4 frames (0.2 s of this clip). A queue of stale frames falls further behind
    # with every frame counted (2.45 s in the middle of the run here) and is never less than 1.2 s
    # behind. Counted, not the latest one: a frame is late by the queue's span plus any pause of
    # this test's thread or the reader's, and a loaded machine pauses a thread for 0.6 s now and
    # then, but not for half the frames.
    assert sum(lag >= 0.8 for lag in late) <= len(late) // 2, late


class MjpegServer:
    """A camera on loopback: an HTTP MJPEG stream that the test can cut and bring back."""

    def __init__(self, size: tuple[int, int] = (64, 48)) -> None:
        self.size = size
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._cut = threading.Event()

    def start(self) -> None:
        cut = self._cut
        cut.clear()
        width, height = self.size

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while not cut.is_set():
                    _ok, jpg = cv2.imencode(".jpg", np.full((height, width, 3), i % 250, np.uint8))
                    data = jpg.tobytes()
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                            + data
                            + b"\r\n"
                        )
                    except OSError:
                        return
                    i += 1
                    time.sleep(0.04)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def camera() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    yield server
    server.cut()


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_a_dropped_stream_is_reopened_and_the_drop_is_visible(camera: MjpegServer) -> None:
    reader = reader_for(f"http://127.0.0.1:{camera.port}/stream")
    reader.start()
    try:
        assert wait_for(lambda: reader.get(timeout=0.1) is not None, 10)
        assert reader.status == "ok"
        camera.cut()
        assert wait_for(lambda: reader.status == "reconnecting", 15), "the drop never showed"
        camera.start()
        assert wait_for(lambda: reader.status == "ok", 15), "the stream never came back"
        while reader.get(timeout=0.01) is not None:
            pass
        assert wait_for(lambda: reader.get(timeout=0.1) is not None, 10)
        assert reader.reconnects >= 1
    finally:
        reader.stop()


class StepClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_file_missing_at_start_is_waited_for_and_counted_once_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "late.avi"
    clock = StepClock()
    reader = waiting_reader(str(path), clock=clock)
    reader.start()
    try:
        assert reader.status == "reconnecting" and reader.get(timeout=0.3) is None
        clock.now += 7.5
        assert reader.down_for() == 7.5
        write_clip(tmp_path / "copying.avi", 10.0, 5).rename(path)  # it appears whole, as a mount does
        indexes = []
        while len(indexes) < 5 and (frame := reader.get(timeout=10)) is not None:
            indexes.append(frame.index)
        assert indexes == [0, 1, 2, 3, 4]
        assert reader.frame_size == (64, 48) and reader.status in ("ok", "ended") and reader.down_for() == 0.0
    finally:
        reader.stop()


def test_a_waited_for_file_that_is_no_video_ends_the_reader_with_its_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.avi"
    path.write_text("this is not a video\n" * 100)
    reader = waiting_reader(str(path))
    reader.start()
    assert wait_for(lambda: reader.finished, 10)
    reader.stop()
    assert reader.failure is not None and "notes.avi" in str(reader.failure)


def test_a_stream_that_does_not_answer_at_start_is_retried_until_it_does(camera: MjpegServer) -> None:
    port = camera.port
    camera.cut()  # nothing listens on the port yet
    reader = waiting_reader(f"http://127.0.0.1:{port}/stream")
    reader.start()
    try:
        assert reader.get(timeout=0.5) is None and reader.status == "reconnecting" and reader.down_for() > 0
        camera.start()
        assert wait_for(lambda: reader.get(timeout=0.1) is not None, 15), "the stream was never opened"
        assert reader.status == "ok" and reader.down_for() == 0.0 and reader.frame_size == (64, 48)
    finally:
        reader.stop()


def test_a_missing_file_in_a_one_off_run_and_an_unknown_url_scheme_are_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        parse_input(str(tmp_path / "nope.avi"), must_exist=True)
    with pytest.raises(ConfigError, match=r"input.source: unsupported URL scheme 'rtp'"):
        parse_input("rtp://camera.local/stream", must_exist=False)
    with pytest.raises(InputError, match="is not a file"):
        parse_input(str(tmp_path), must_exist=False)  # a directory never becomes a video


def frame_of_size(reader: FrameReader, size: tuple[int, int], timeout: float = 30.0) -> bool:
    """Whether a frame of `size` (width, height) comes before the deadline, which only bounds a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = reader.get(timeout=0.1)
        if frame is not None and (frame.image.shape[1], frame.image.shape[0]) == size:
            return True
    return False


def test_the_main_stream_stands_in_while_the_substream_is_away(caplog: pytest.LogCaptureFixture) -> None:
    """The sub-stream is read when it answers; while it does not (at start, or after a drop), the
    camera's main stream is, and the sub-stream is tried again in the background."""
    main, sub = MjpegServer((64, 48)), MjpegServer((32, 24))
    main.start()
    sub.start()
    sub.cut()  # its port is known; nothing listens on it yet
    reader = FrameReader(
        parse_input(f"http://127.0.0.1:{main.port}/main", must_exist=False),
        substream=parse_substream(f"http://127.0.0.1:{sub.port}/sub"),
        substream_retry_s=0.5,
        wait=True,
        loop=False,
        realtime=False,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    caplog.set_level("INFO", logger="people_counter.vision.source")
    reader.start()
    try:
        assert frame_of_size(reader, (64, 48)), "the main stream was never read"
        assert reader.stream == "main" and reader.status == "ok"
        assert any("main stream" in r.message and "counted" in r.message for r in caplog.records), caplog.text
        sub.start()
        assert frame_of_size(reader, (32, 24)), "the sub-stream was never read once it answered"
        assert reader.stream == "sub" and reader.frame_size == (32, 24)
        sub.cut()
        assert frame_of_size(reader, (64, 48)), "the main stream did not stand in after the sub-stream dropped"
        assert reader.stream == "main" and reader.status == "ok"
    finally:
        reader.stop()
        main.cut()
        sub.cut()


def test_a_substream_is_read_instead_of_the_main_stream(camera: MjpegServer) -> None:
    small = MjpegServer((32, 24))
    small.start()
    reader = FrameReader(
        parse_input(f"http://127.0.0.1:{camera.port}/main"),
        substream=parse_substream(f"http://127.0.0.1:{small.port}/sub"),
        loop=False,
        realtime=False,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    reader.start()
    try:
        assert reader.stream == "sub" and reader.frame_size == (32, 24)
        assert reader.spec.label == f"sub-stream http://127.0.0.1:{small.port}/sub"
        assert frame_of_size(reader, (32, 24))
    finally:
        reader.stop()
        small.cut()
