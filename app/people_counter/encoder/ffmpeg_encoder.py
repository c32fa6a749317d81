"""people-counter-stream: the counter's frames -> the pinned ffmpeg (MJPEG) -> the dashboard.

It connects to the counter's frame socket (stream.socket_path) and reads the
self-describing frame stream (people_counter.contract). For each connection it starts ffmpeg
with the stream's own size and rate, so nothing is configured twice; when the counter
goes away (EOF) ffmpeg's input is closed, it exits cleanly, and the program waits for
the counter to come back. ffmpeg's MJPEG output is split into JPEGs on SOI/EOI markers
and served to the dashboard on a Unix socket (stream.jpeg_socket_path), framed as the
contract's JPEG socket says: JPEGs, and the status on every change and at least every second.
Each dashboard connection has a one-JPEG slot: a slow reader skips frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from people_counter.command_runner import run_command
from people_counter.config import DEFAULT_CONFIG_PATH, Config, StreamConfig, load_config
from people_counter.contract import (
    FRAME_HEADER,
    FRAME_MAGIC,
    MAX_HEADER_LINE,
    STATUS_EVERY_S,
    EncoderStatus,
    StreamHeader,
    jpeg_message,
)
from people_counter.prepare.ffmpeg import resolve_ffmpeg

log = logging.getLogger("people_counter.encoder.ffmpeg_encoder")

RECONNECT_S = 0.5
_SOCKET_MODE = 0o660  # the dashboard's user connects through the shared group
SOI = b"\xff\xd8"
EOI = b"\xff\xd9"


class JpegSplitter:
    """Cuts ffmpeg's MJPEG byte stream into whole JPEGs."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            start = self._buf.find(SOI)
            if start < 0:
                # Keep a trailing 0xff: it may be the first half of the next SOI.
                del self._buf[: max(0, len(self._buf) - 1)]
                return out
            # Entropy-coded data stuffs 0xff with 0x00, so EOI only ends the image.
            end = self._buf.find(EOI, start + 2)
            if end < 0:
                del self._buf[:start]
                return out
            out.append(bytes(self._buf[start : end + 2]))
            del self._buf[: end + 2]


class _Viewer:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.jpeg: bytes | None = None
        self.status: bytes | None = None
        self.wake = asyncio.Event()


class JpegServer:
    """Serves JPEGs and status to the dashboard; a slow reader never holds the encoder back."""

    def __init__(self, path: Path, status: EncoderStatus) -> None:
        self.path = path
        self.status = status
        self._viewers: set[_Viewer] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, _SOCKET_MODE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for viewer in list(self._viewers):
                viewer.writer.close()
            await self._server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def publish_jpeg(self, jpeg: bytes, seq: int, ts: float) -> None:
        message = jpeg_message(jpeg, seq, ts)
        for viewer in self._viewers:
            viewer.jpeg = message  # replaces an unsent one: that frame is skipped
            viewer.wake.set()

    def publish_status(self) -> None:
        message = self.status.message()
        for viewer in self._viewers:
            viewer.status = message
            viewer.wake.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        viewer = _Viewer(writer)
        viewer.status = self.status.message()
        viewer.wake.set()
        self._viewers.add(viewer)
        try:
            while True:
                await viewer.wake.wait()
                viewer.wake.clear()
                for attr in ("status", "jpeg"):
                    message = getattr(viewer, attr)
                    if message is not None:
                        setattr(viewer, attr, None)
                        writer.write(message)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._viewers.discard(viewer)
            writer.close()


def ffmpeg_command(ffmpeg: Path, header: StreamHeader, width: int, quality: int, threads: int = 1) -> list[str]:
    """The encoder: raw BGR frames on stdin, one JPEG per frame on stdout."""
    filters = []
    if width < header.width:
        filters.append(f"scale={width}:-2")
    cmd = [
        str(ffmpeg),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-f",
        "rawvideo",
        "-pix_fmt",
        header.pix_fmt,
        "-video_size",
        f"{header.width}x{header.height}",
        "-framerate",
        f"{header.fps:g}",
        "-i",
        "pipe:0",
        "-an",
    ]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += [
        # One JPEG out for each frame in, in order: the dashboard learns each JPEG's
        # source time from the queue of frames written (latency is then measurable).
        "-fps_mode",
        "passthrough",
        "-threads",
        str(threads),
        "-c:v",
        "mjpeg",
        "-q:v",
        str(quality),
        "-pix_fmt",
        "yuvj420p",
        "-f",
        "mjpeg",
        "-flush_packets",
        "1",
        "pipe:1",
    ]
    return cmd


async def read_stream_header(reader: asyncio.StreamReader) -> StreamHeader:
    line = await reader.readuntil(b"\n")
    if len(line) > MAX_HEADER_LINE:
        raise ValueError("frame stream header too long")
    return StreamHeader.decode(line)


async def read_frame(reader: asyncio.StreamReader, header: StreamHeader) -> tuple[int, float, bytes]:
    """One whole frame; IncompleteReadError on EOF (a cut frame is thrown away with it)."""
    magic, length, seq, ts = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
    if magic != FRAME_MAGIC or length != header.frame_bytes:
        raise ValueError(f"bad frame header (magic {magic!r}, length {length})")
    return seq, ts, await reader.readexactly(length)


class StreamEncoder:
    """One program run: wait for the counter, encode while it sends, start again when it goes."""

    def __init__(self, config: StreamConfig, ffmpeg: Path) -> None:
        self.config = config
        self.ffmpeg = ffmpeg
        self.status = EncoderStatus()
        self.server = JpegServer(config.jpeg_socket_path, self.status)
        self._stop = asyncio.Event()
        self._rate: collections.deque[float] = collections.deque(maxlen=50)

    def stop(self) -> None:
        self._stop.set()

    def _set_state(self, state: str, error: str = "") -> None:
        if state != self.status.state:
            log.info("encoder %s%s", state, f": {error}" if error else "")
            self.status.state = state
            self.status.since = time.time()
        if error:
            self.status.last_error = error
        self.server.publish_status()

    async def run(self) -> None:
        await self.server.start()
        _notify("READY=1")
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stop.is_set():
                self._set_state("waiting")
                try:
                    reader, writer = await asyncio.open_unix_connection(
                        str(self.config.socket_path), limit=MAX_HEADER_LINE * 2
                    )
                except OSError:
                    await self._sleep(RECONNECT_S)
                    continue
                try:
                    await self._session(reader)
                finally:
                    writer.close()
                if not self._stop.is_set():
                    self.status.restarts += 1
        finally:
            heartbeat.cancel()
            await self.server.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            now = time.monotonic()
            while self._rate and now - self._rate[0] > 5.0:
                self._rate.popleft()
            self.status.fps = round(len(self._rate) / 5.0, 2) if self._rate else 0.0
            self.server.publish_status()
            _notify(f"STATUS={self.status.state}, {self.status.fps:g} fps to the dashboard")

    async def _session(self, reader: asyncio.StreamReader) -> None:
        """Encode one counter connection, from its header to its EOF."""
        header_task = asyncio.ensure_future(read_stream_header(reader))
        stop_task = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({header_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        if not header_task.done():
            header_task.cancel()
            return
        try:
            header = header_task.result()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError) as error:
            self._set_state("waiting", f"counter sent no valid stream header: {error}")
            return
        self.status.width, self.status.height = header.width, header.height
        self.status.source_fps = header.fps
        cmd = ffmpeg_command(self.ffmpeg, header, self.config.width, self.config.quality)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            self._set_state("restarting", f"cannot start {self.ffmpeg}: {error}")
            await self._sleep(2.0)
            return
        self._set_state("running")
        in_flight: collections.deque[tuple[int, float]] = collections.deque()
        pump_in = asyncio.create_task(self._pump_in(reader, header, proc, in_flight))
        pump_out = asyncio.create_task(self._pump_out(proc, in_flight))
        errors = asyncio.create_task(_log_stderr(proc))
        stop_task = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({pump_in, pump_out, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        # The counter went away (or we stop): close ffmpeg's input so it ends cleanly.
        pump_in.cancel()
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_out
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await errors
        if pump_out in done and not self._stop.is_set():
            self._set_state("restarting", f"ffmpeg exited with status {proc.returncode}")
            await self._sleep(1.0)

    async def _pump_in(
        self,
        reader: asyncio.StreamReader,
        header: StreamHeader,
        proc: asyncio.subprocess.Process,
        in_flight: collections.deque[tuple[int, float]],
    ) -> None:
        assert proc.stdin is not None
        try:
            while True:
                seq, ts, frame = await read_frame(reader, header)
                in_flight.append((seq, ts))
                proc.stdin.write(frame)
                await proc.stdin.drain()
                self.status.frames_in += 1
        except asyncio.IncompleteReadError:
            log.info("the counter closed the frame stream")
        except (ValueError, ConnectionError) as error:
            self.status.last_error = str(error)
            log.warning("frame stream broken: %s", error)

    async def _pump_out(
        self, proc: asyncio.subprocess.Process, in_flight: collections.deque[tuple[int, float]]
    ) -> None:
        assert proc.stdout is not None
        splitter = JpegSplitter()
        while chunk := await proc.stdout.read(1 << 16):
            for jpeg in splitter.feed(chunk):
                seq, ts = in_flight.popleft() if in_flight else (0, time.time())
                self.status.jpegs_out += 1
                self._rate.append(time.monotonic())
                self.server.publish_jpeg(jpeg, seq, ts)


async def _log_stderr(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        log.warning("ffmpeg: %s", line.decode(errors="replace").rstrip())


def _notify(message: str) -> None:
    """sd_notify when run by systemd (Type=notify); a no-op elsewhere."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    import sdnotify

    sdnotify.SystemdNotifier().notify(message)


async def _amain(config: Config) -> int:
    ffmpeg = resolve_ffmpeg(config.stream.ffmpeg)
    encoder = StreamEncoder(config.stream, ffmpeg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, encoder.stop)
    log.info(
        "frames from %s, JPEGs to %s, encoder %s",
        config.stream.socket_path,
        config.stream.jpeg_socket_path,
        ffmpeg,
    )
    await encoder.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="people-counter-stream", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (YAML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)

    def body() -> int:
        missing_default = args.config == DEFAULT_CONFIG_PATH and not args.config.exists()
        return asyncio.run(_amain(Config() if missing_default else load_config(args.config)))

    return run_command("people-counter-stream", args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
