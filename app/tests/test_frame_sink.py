"""FrameSink: the counter's hand-off never blocks, and frames arrive whole or not at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from people_counter.contract import FRAME_HEADER, FRAME_MAGIC, StreamHeader
from people_counter.outputs.frame_sink import FrameSink

# A separate process plays the encoder, so that it can be SIGSTOPped like the real one.
# It checks every frame it reads (magic, length, every byte equal to seq % 251) and
# reports one JSON line per frame.
READER = r"""
import json, socket, struct, sys
hdr = struct.Struct("<4sIQd")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
f = s.makefile("rb", buffering=1 << 20)
line = f.readline()
print(json.dumps({"header": line.decode()}), flush=True)
while True:
    h = f.read(hdr.size)
    if len(h) < hdr.size:
        break
    magic, n, seq, ts = hdr.unpack(h)
    data = f.read(n)
    if len(data) < n:
        break
    whole = magic == b"PCFR" and data.count(bytes([seq % 251])) == n
    print(json.dumps({"seq": seq, "whole": whole}), flush=True)
"""

W, H = 768, 576
HANG_S = 30.0
"""Deadlines in this file only bound a hang: nothing is asserted to happen within a span of time.
Where the sink must not wait for the encoder, the encoder is stopped (or never there), so an offer
that waited would wait until the deadline, not a little longer than usual."""


def frame(seq: int) -> np.ndarray:
    return np.full((H, W, 3), seq % 251, dtype=np.uint8)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "frames.sock"


def start_reader(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", READER, str(path)], stdout=subprocess.PIPE, text=True, bufsize=1)


def wait_connected(sink: FrameSink, timeout: float = HANG_S) -> None:
    deadline = time.monotonic() + timeout
    while not sink.connected:
        # Offers also wake the writer thread, which accepts the waiting encoder.
        sink.offer(frame(0))
        assert time.monotonic() < deadline, "the reader never connected"
        time.sleep(0.02)


def next_frame(sink: FrameSink) -> np.ndarray:
    """A frame whose pixels carry the number the sink will give it, so the reader can check it."""
    return frame(sink._seq + 1)


def offer_many(sink: FrameSink, frames: int) -> tuple[int, int]:
    """Offer `frames` numbered frames back to back; the accepted and refused counts."""
    accepted = refused = 0
    for _ in range(frames):
        ok = sink.offer(next_frame(sink))
        accepted += ok
        refused += not ok
    return accepted, refused


def offer_in_a_thread(sink: FrameSink, frames: int) -> tuple[int, int]:
    """offer_many on another thread, which must come back while the encoder cannot read: an offer
    that waited for the encoder would wait until HANG_S (it cannot go on before the encoder does)."""
    counts: list[tuple[int, int]] = []
    worker = threading.Thread(target=lambda: counts.append(offer_many(sink, frames)), daemon=True)
    worker.start()
    worker.join(HANG_S)
    assert not worker.is_alive(), "offer() waited for the encoder"
    return counts[0]


def send_one_by_one(sink: FrameSink, frames: int) -> None:
    """Offer frames one at a time, each once the one before it has been sent whole: every frame is
    sent, however fast or slow the writer runs."""
    for _ in range(frames):
        sent = sink.sent
        assert sink.offer(next_frame(sink))
        deadline = time.monotonic() + HANG_S
        while sink.sent == sent:
            assert time.monotonic() < deadline, "a frame was never sent"
            time.sleep(0.005)


def offer_until_sent(sink: FrameSink, more: int) -> None:
    """Offer frames (as the counting loop does, whether or not the encoder keeps up) until `more`
    have been sent."""
    target = sink.sent + more
    deadline = time.monotonic() + HANG_S
    while sink.sent < target:
        sink.offer(next_frame(sink))
        assert time.monotonic() < deadline, f"only {sink.sent} frames were sent, waiting for {target}"
        time.sleep(0.01)


def read_lines(proc: subprocess.Popen[str]) -> list[dict[str, object]]:
    assert proc.stdout is not None
    return [json.loads(line) for line in proc.stdout]


def test_no_encoder_offer_is_instant_and_counts_drops(sock_path: Path) -> None:
    with FrameSink(sock_path, 10.0) as sink:
        assert sock_path.is_socket()
        assert oct(sock_path.stat().st_mode & 0o777) == oct(0o660)
        # No encoder ever connects: an offer that waited for one would never come back.
        accepted, refused = offer_in_a_thread(sink, 60)
        assert accepted == 0
        assert sink.dropped == refused == 60
        assert sink.sent == 0
    assert not sock_path.exists()


def test_frames_arrive_whole_with_a_self_describing_header(sock_path: Path) -> None:
    with FrameSink(sock_path, 12.5) as sink:
        reader = start_reader(sock_path)
        try:
            wait_connected(sink)
            sent_before = sink.sent  # wait_connected's offers may have been sent too
            send_one_by_one(sink, 10)
        finally:
            sink.close()
            lines = read_lines(reader)
            reader.wait(HANG_S)
    header = StreamHeader.decode(str(lines[0]["header"]).encode())
    assert (header.width, header.height, header.fps, header.pix_fmt) == (W, H, 12.5, "bgr24")
    frames = lines[1:]
    assert len(frames) == sent_before + 10
    assert all(f["whole"] for f in frames)
    seqs = [int(f["seq"]) for f in frames]  # type: ignore[call-overload]
    assert seqs == sorted(seqs)
    assert sink.sent == len(frames)


def test_stopped_encoder_never_blocks_and_resumes(sock_path: Path) -> None:
    with FrameSink(sock_path, 30.0) as sink:
        reader = start_reader(sock_path)
        try:
            wait_connected(sink)
            send_one_by_one(sink, 4)
            sent_before = sink.sent
            os.kill(reader.pid, signal.SIGSTOP)
            try:
                # 1.3 MB frames fill the socket buffer at once: from here on all are dropped, and
                # the writer stays stuck in the frame it was sending until the encoder reads again.
                accepted, refused = offer_in_a_thread(sink, 75)
            finally:
                os.kill(reader.pid, signal.SIGCONT)
            # At most one frame goes into the buffer and one waits in the slot: the rest replace it.
            assert accepted <= 2 and refused == 75 - accepted
            assert sink.sent <= sent_before + 2
            # Resumed: frames flow again, by themselves.
            offer_until_sent(sink, 10)
        finally:
            sink.close()
            lines = read_lines(reader)
            reader.wait(HANG_S)
    frames = lines[1:]
    assert frames and all(f["whole"] for f in frames)


def test_encoder_restart_gets_a_fresh_header(sock_path: Path) -> None:
    with FrameSink(sock_path, 10.0) as sink:
        first = start_reader(sock_path)
        wait_connected(sink)
        send_one_by_one(sink, 3)
        first.kill()
        first.wait()
        second = start_reader(sock_path)
        try:
            offer_until_sent(sink, 3)
        finally:
            sink.close()
            lines = read_lines(second)
            second.wait(HANG_S)
    assert "header" in lines[0]
    assert all(f["whole"] for f in lines[1:])


def test_size_change_restarts_the_stream(sock_path: Path) -> None:
    with FrameSink(sock_path, 10.0) as sink:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(sock_path))
        stream = client.makefile("rb")
        wait_connected(sink)
        assert sink.offer(frame(1))
        assert StreamHeader.decode(stream.readline()).width == W
        magic, n, *_ = FRAME_HEADER.unpack(stream.read(FRAME_HEADER.size))
        assert magic == FRAME_MAGIC
        stream.read(n)  # the writer took the frame from its slot: the next offer is not a replacement
        client.settimeout(HANG_S)  # read() below waits for the sink to end the connection
        assert sink.offer(np.zeros((120, 160, 3), np.uint8))
        rest = stream.read()
        # The old connection ends without a partial frame for the new size.
        assert len(rest) % (FRAME_HEADER.size + W * H * 3) == 0
        client.close()


def test_close_is_prompt_with_a_stopped_encoder(sock_path: Path) -> None:
    sink = FrameSink(sock_path, 10.0)
    reader = start_reader(sock_path)
    try:
        wait_connected(sink)
        os.kill(reader.pid, signal.SIGSTOP)
        assert sink.offer(next_frame(sink))
        # Once the writer has taken the frame from its slot it is sending it, and a frame (1.3 MB)
        # is more than the socket holds: it stays in that send until the encoder reads or close().
        deadline = time.monotonic() + HANG_S
        while sink._pending is not None:
            assert time.monotonic() < deadline, "the writer never took the frame"
            time.sleep(0.005)
        offer_in_a_thread(sink, 6)
        sink.close()
        # close() joins the writer with a timeout (5 s): a writer stuck on the stopped encoder is
        # still alive after it, however fast or slow the machine is.
        assert not sink._thread.is_alive(), "close() left the writer stuck on the stopped encoder"
    finally:
        os.kill(reader.pid, signal.SIGCONT)
        reader.kill()
        reader.wait()


def test_a_new_encoder_connection_replaces_a_live_one_and_gets_a_header(sock_path: Path) -> None:
    with FrameSink(sock_path, 10.0) as sink:
        old = start_reader(sock_path)
        try:
            wait_connected(sink)
            send_one_by_one(sink, 3)
            old_connection = sink._client
            new = start_reader(sock_path)  # e.g. the stream service restarted before the old one died
            try:
                deadline = time.monotonic() + HANG_S
                while sink._client in (old_connection, None):  # offers wake the writer, which accepts
                    sink.offer(next_frame(sink))
                    assert time.monotonic() < deadline, "the new encoder was never taken"
                    time.sleep(0.01)
                offer_until_sent(sink, 5)
            finally:
                sink.close()
                new_lines = read_lines(new)
                new.wait(HANG_S)
        finally:
            old.kill()
            old.wait()
    assert "header" in new_lines[0]
    assert len(new_lines) > 3 and all(f["whole"] for f in new_lines[1:])
