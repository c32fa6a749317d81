"""Video fan-out: one JPEG stream from people-counter-stream, many MJPEG viewers.

The dashboard connects to the stream's JPEG socket (reconnecting while the encoder is
down) and keeps the latest JPEG. Each viewer has a one-JPEG slot: a new JPEG replaces an
unsent one, so a slow viewer skips frames and never holds back the others or the reader.
A viewer that reads nothing for `write_timeout_s` is dropped, and its place freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from people_counter.contract import JPEG_META, MSG_HEADER, MSG_JPEG, MSG_STATUS, STATUS_EVERY_S
from people_counter.dashboard.stalled import drop_stalled

log = logging.getLogger("people_counter.dashboard.video")

BOUNDARY = "frame"
RECONNECT_S = 0.5
# The encoder sends a status every second: three missed means it is stopped or hung.
ENCODER_SILENT_S = 3 * STATUS_EVERY_S
VIDEO_FRESH_S = 3.0
IDLE_CHECK_S = 1.0


class _Viewer:
    __slots__ = ("dropped", "frame", "wake")

    def __init__(self) -> None:
        self.frame: tuple[bytes, int, float] | None = None
        self.wake = asyncio.Event()
        self.dropped = 0


class JpegSource:
    """Reads the stream's socket; publishes each JPEG to every viewer's slot."""

    def __init__(self, socket_path: Path, max_viewers: int = 20, write_timeout_s: float = 10.0) -> None:
        self.socket_path = socket_path
        self.max_viewers = max_viewers
        self.write_timeout_s = write_timeout_s
        self.connected = False
        self.status: dict[str, Any] = {}
        self.status_at = 0.0
        self.latest: tuple[bytes, int, float] | None = None
        self.latest_at = 0.0
        self.jpegs = 0
        self.viewer_drops = 0
        self._viewers: set[_Viewer] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def encoder_health(self) -> dict[str, Any]:
        """What the health panel says about the encoder and whether video is playing."""
        now = time.monotonic()
        if not self.connected:
            state = "down"
        elif now - self.status_at > ENCODER_SILENT_S:
            state = "not responding"
        else:
            state = str(self.status.get("state", "unknown"))
        video = state == "running" and now - self.latest_at < VIDEO_FRESH_S
        return {
            "state": state,
            "video": video,
            "fps": self.status.get("fps", 0.0) if state == "running" else 0.0,
            "frames": self.status.get("jpegs_out", 0),
            "restarts": self.status.get("restarts", 0),
            "size": f"{self.status.get('width', 0)}x{self.status.get('height', 0)}",
            "viewers": self.viewers,
            "viewer_dropped_frames": self.viewer_drops,
        }

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                await asyncio.sleep(RECONNECT_S)
                continue
            self.connected = True
            self.status_at = time.monotonic()
            log.info("connected to the encoder at %s", self.socket_path)
            try:
                await self._read(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as error:
                log.info("encoder connection ended: %s", error or "EOF")
            finally:
                self.connected = False
                writer.close()
            await asyncio.sleep(RECONNECT_S)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            kind, length = MSG_HEADER.unpack(await reader.readexactly(MSG_HEADER.size))
            body = await reader.readexactly(length)
            if kind == MSG_STATUS:
                self.status = json.loads(body)
                self.status_at = time.monotonic()
            elif kind == MSG_JPEG:
                seq, ts = JPEG_META.unpack_from(body)
                self._publish((body[JPEG_META.size :], seq, ts))

    def _publish(self, frame: tuple[bytes, int, float]) -> None:
        self.latest = frame
        self.latest_at = time.monotonic()
        self.jpegs += 1
        for viewer in self._viewers:
            if viewer.frame is not None:
                viewer.dropped += 1
                self.viewer_drops += 1
            viewer.frame = frame
            viewer.wake.set()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET /video.mjpg: multipart/x-mixed-replace, one part per JPEG."""
        if len(self._viewers) >= self.max_viewers:
            raise web.HTTPServiceUnavailable(text="too many viewers", headers={"Retry-After": "10"})
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        # aiohttp holds the headers back until the first body bytes; a preamble (ignored
        # before the first boundary) sends them now, so a viewer knows it is in even
        # while the encoder is down.
        await response.write(b"\r\n")
        viewer = _Viewer()
        # Start with the latest frame if it is recent, so a new viewer sees a picture at once.
        if self.latest is not None and time.monotonic() - self.latest_at < VIDEO_FRESH_S:
            viewer.frame = self.latest
            viewer.wake.set()
        self._viewers.add(viewer)
        try:
            while True:
                try:
                    await asyncio.wait_for(viewer.wake.wait(), IDLE_CHECK_S)
                except TimeoutError:
                    # No frames (encoder down): notice a viewer that left, so its place is freed.
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                viewer.wake.clear()
                frame, viewer.frame = viewer.frame, None
                if frame is None:
                    continue
                jpeg, seq, ts = frame
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                    f"X-Frame-Seq: {seq}\r\nX-Frame-Ts: {ts:.6f}\r\n\r\n"
                ).encode()
                # write() waits only when this viewer's socket buffer is full: only this
                # viewer waits, and its slot keeps just the newest frame meanwhile.
                await asyncio.wait_for(response.write(head + jpeg + b"\r\n"), self.write_timeout_s)
        except TimeoutError:
            drop_stalled(request, "a video viewer", self.write_timeout_s)
        except (ConnectionError, asyncio.CancelledError):
            # A viewer closing the page mid-stream is normal, not an error.
            pass
        finally:
            self._viewers.discard(viewer)
        return response

    async def snapshot(self, _request: web.Request) -> web.Response:
        """GET /snapshot.jpg: the latest frame, for a still or a quick check."""
        if self.latest is None or time.monotonic() - self.latest_at > VIDEO_FRESH_S:
            raise web.HTTPServiceUnavailable(text="video unavailable")
        return web.Response(body=self.latest[0], content_type="image/jpeg", headers={"Cache-Control": "no-store"})
