"""people-counter-stream with the pinned ffmpeg: real frames in, real JPEGs out, counter restarts."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from people_counter.contract import JPEG_META, MSG_HEADER, MSG_STATUS, StreamHeader
from people_counter.encoder.ffmpeg_encoder import JpegSplitter, ffmpeg_command
from people_counter.outputs.frame_sink import FrameSink
from testsupport.live_stack import StreamProcess, pinned_ffmpeg, short_tmp


class JpegClient:
    """The dashboard's side of the stream's JPEG socket, read synchronously."""

    def __init__(self, path: Path) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                assert time.monotonic() < deadline, "the stream's JPEG socket never appeared"
                time.sleep(0.05)
        self.sock.settimeout(10)
        self.file = self.sock.makefile("rb")
        self.status: dict[str, object] = {}

    def next(self) -> tuple[str, object]:
        kind, n = MSG_HEADER.unpack(self.file.read(MSG_HEADER.size))
        body = self.file.read(n)
        if kind == MSG_STATUS:
            self.status = json.loads(body)
            return "status", self.status
        seq, ts = JPEG_META.unpack_from(body)
        return "jpeg", (seq, ts, body[JPEG_META.size :])

    def jpegs(self, count: int, timeout: float = 10) -> list[tuple[int, float, bytes]]:
        out: list[tuple[int, float, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, f"only {len(out)} JPEGs, status {self.status}"
            kind, value = self.next()
            if kind == "jpeg":
                out.append(value)  # type: ignore[arg-type]
        return out

    def wait_status(self, state: str, timeout: float = 10) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while self.status.get("state") != state:
            assert time.monotonic() < deadline, f"encoder never {state}: {self.status}"
            self.next()
        return self.status

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with short_tmp() as path:
        yield path


def pattern(seq: int, w: int = 640, h: int = 480) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 2] = 200  # red in BGR: the JPEG must still be red
    cv2.putText(img, str(seq), (20, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 5)
    return img


@contextlib.contextmanager
def feeding(sink: FrameSink, fps: float = 20, size: tuple[int, int] = (640, 480)) -> Iterator[None]:
    """Offer numbered frames at about `fps` from a thread until the block ends: as long as the test
    needs frames, not for a span of time that a slow machine might not fill."""
    done = threading.Event()

    def feed() -> None:
        seq = 0
        while not done.is_set():
            seq += 1
            sink.offer(pattern(seq, *size))
            done.wait(1 / fps)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        yield
    finally:
        done.set()
        feeder.join()


def test_jpeg_splitter_handles_any_chunking() -> None:
    ok, enc = cv2.imencode(".jpg", pattern(1))
    assert ok
    one = enc.tobytes()
    stream = one * 3
    for size in (1, 2, 7, 4096, len(stream)):
        splitter = JpegSplitter()
        got = [j for i in range(0, len(stream), size) for j in splitter.feed(stream[i : i + size])]
        assert got == [one, one, one]


def test_ffmpeg_command_scales_only_down(tmp_path: Path) -> None:
    header = StreamHeader(768, 576, 10.0)
    assert "-vf" not in ffmpeg_command(tmp_path / "ffmpeg", header, 768, 5)
    cmd = ffmpeg_command(tmp_path / "ffmpeg", header, 384, 7)
    assert cmd[cmd.index("-vf") + 1] == "scale=384:-2"
    assert cmd[cmd.index("-q:v") + 1] == "7"
    assert cmd[cmd.index("-video_size") + 1] == "768x576"


def test_encodes_real_frames_and_survives_a_counter_restart(run_dir: Path) -> None:
    ffmpeg = pinned_ffmpeg()
    with StreamProcess(run_dir, ffmpeg=ffmpeg, width=640) as stream:
        client = JpegClient(stream.jpeg_socket)
        try:
            assert client.wait_status("waiting")["frames_in"] == 0
            sink = FrameSink(stream.frame_socket, 20.0)
            fed_from = time.time()
            try:
                with feeding(sink):
                    jpegs = client.jpegs(8)
            finally:
                sink.close()
            fed_until = time.time()
            image = cv2.imdecode(np.frombuffer(jpegs[-1][2], np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (480, 640, 3)
            b, g, r = (float(c) for c in image[10:40, 10:40].reshape(-1, 3).mean(axis=0))
            assert r > 170 and b < 40 and g < 40
            seqs = [seq for seq, _, _ in jpegs]
            assert seqs == sorted(seqs) and seqs[0] > 0
            assert all(fed_from <= ts <= fed_until for _, ts, _ in jpegs)  # each the time its frame was fed
            status = client.wait_status("running") if client.status.get("state") != "waiting" else client.status
            ffmpeg_pids = {p.pid for p in psutil.Process(stream.pid).children() if p.name() == "ffmpeg"}

            # The counter went away: ffmpeg ends cleanly (it is waited for) before the stream waits.
            client.wait_status("waiting")
            assert not [p for p in psutil.Process(stream.pid).children() if p.name() == "ffmpeg"]

            # The counter is back, with another frame size: a new ffmpeg for the new size.
            sink = FrameSink(stream.frame_socket, 10.0)
            try:
                with feeding(sink, 10, (320, 240)):
                    new_jpegs = client.jpegs(4)
                    status = client.wait_status("running")
                    new_pids = {p.pid for p in psutil.Process(stream.pid).children() if p.name() == "ffmpeg"}
            finally:
                sink.close()
            image = cv2.imdecode(np.frombuffer(new_jpegs[-1][2], np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (240, 320, 3)
            assert status["restarts"] == 1 and status["width"] == 320
            assert new_pids and not (new_pids & ffmpeg_pids)
        finally:
            client.close()
    assert stream.returncode == 0, stream.log()


def test_a_stalled_dashboard_reader_does_not_stall_the_encoder(run_dir: Path) -> None:
    with StreamProcess(run_dir, ffmpeg=pinned_ffmpeg(), width=640) as stream:
        stalled = JpegClient(stream.jpeg_socket)  # connects, then never reads
        live = JpegClient(stream.jpeg_socket)
        sink = FrameSink(stream.frame_socket, 25.0)
        try:
            with feeding(sink, 25):
                jpegs = live.jpegs(60, timeout=15)
            assert len(jpegs) == 60
            assert sink.dropped < sink.sent  # the encoder kept up while one reader stalled
        finally:
            sink.close()
            stalled.close()
            live.close()
    assert stream.returncode == 0, stream.log()


def _vtest_frame() -> np.ndarray:
    rng = np.random.default_rng(1)
    # Textured noise stands in for a camera picture: blur must visibly smooth it.
    return rng.integers(0, 255, (576, 768, 3), dtype=np.uint8)


def test_annotate_resizes_blurs_inside_boxes_and_leaves_the_input_alone() -> None:
    from people_counter.outputs.annotate import annotate_frame
    from people_counter.stage_data import CounterState, PersonTrack

    frame = _vtest_frame()
    original = frame.copy()
    tracks = [
        PersonTrack(7, (400.0, 300.0, 480.0, 500.0), 0.0),
        PersonTrack(9, (100.0, 300.0, 160.0, 450.0), 0.0, True),
    ]
    state = CounterState(2, 11, 3, 1, 4.0, 10.0, 8.0, 0, "ok", 5.0, time.time())
    out = annotate_frame(frame, tracks, ((0, 288), (768, 288)), state, True, 384)
    assert out.shape == (288, 384, 3) and out.dtype == np.uint8
    assert np.array_equal(frame, original)
    inside = out[160:240, 205:235].astype(float)  # within track 7, scaled by 0.5
    outside = out[200:240, 300:380].astype(float)
    # Pixelated: large flat blocks, so far fewer distinct neighbouring differences.
    assert np.abs(np.diff(inside, axis=1)).mean() < 0.3 * np.abs(np.diff(outside, axis=1)).mean()
    plain = annotate_frame(frame, tracks, ((0, 288), (768, 288)), state, False, 768)
    assert plain.shape == frame.shape
    assert np.array_equal(plain[320:400, 420:460], frame[320:400, 420:460])  # no blur when off


def test_annotate_is_cheap() -> None:
    from people_counter.outputs.annotate import annotate_frame
    from people_counter.stage_data import CounterState, PersonTrack

    frame = _vtest_frame()
    tracks = [PersonTrack(i, (20.0 + 70 * i, 200.0, 80.0 + 70 * i, 400.0), 0.0) for i in range(10)]
    state = CounterState(10, 50, 20, 18, 9.0, 10.0, 8.0, 0, "ok", 5.0, time.time())
    cpu_s = []
    for _ in range(50):
        t0 = time.process_time()
        annotate_frame(frame, tracks, ((0, 288), (768, 288)), state, True, 768)
        cpu_s.append(time.process_time() - t0)
    # The budget is 2-3 ms at 768x576. CPU time of this process, not wall time: other processes on
    # a loaded machine cannot stretch it. A call over 10 ms in more than half of the calls is a
    # slower drawing path, not noise.
    slow = sum(1 for s in cpu_s if s >= 0.010)
    assert slow <= 25, sorted(cpu_s)


def test_the_pinned_ffmpeg_comes_from_the_cache() -> None:
    from people_counter.prepare.ffmpeg import FFMPEG_VERSION, binary_version, cached_binary

    binary = pinned_ffmpeg()
    assert binary == cached_binary()
    assert binary_version(binary) == FFMPEG_VERSION


def test_a_wheel_with_the_wrong_hash_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    import zipfile

    from people_counter.errors import UserError
    from people_counter.prepare.ffmpeg import FFMPEG_VERSION, cached_binary, ensure_ffmpeg, machine_arch, wheel_name

    fake = tmp_path / wheel_name(machine_arch())
    with zipfile.ZipFile(fake, "w") as archive:
        member = f"imageio_ffmpeg/binaries/ffmpeg-linux-{machine_arch()}-v{FFMPEG_VERSION}"
        archive.writestr(member, b"#!/bin/sh\necho evil\n")
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="sha256"):
        ensure_ffmpeg(cache, wheel=fake)
    assert not cached_binary(cache).exists()
    assert list(cached_binary(cache).parent.iterdir()) == []  # no temporary left behind


def test_a_failing_ffmpeg_is_reported_and_retried_not_fatal(run_dir: Path) -> None:
    with StreamProcess(run_dir, ffmpeg=Path("/bin/false"), width=640) as stream:
        client = JpegClient(stream.jpeg_socket)
        sink = FrameSink(stream.frame_socket, 20.0)
        try:
            with feeding(sink):
                status = client.wait_status("restarting")
                assert "ffmpeg exited with status 1" in str(status["last_error"])
                client.wait_status("waiting")  # and it goes back to waiting for the counter
                assert stream.alive()
        finally:
            sink.close()
            client.close()
    assert stream.returncode == 0, stream.log()
