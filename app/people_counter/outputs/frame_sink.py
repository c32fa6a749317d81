"""The counter's side of the frame hand-off to the encoder: never blocks the counting loop.

The counter listens on a Unix stream socket (stream.socket_path, in /run/people-counter);
the encoder (`people-counter-stream`) connects to it. A background thread owns the
socket: the counting thread only puts a frame reference into a one-frame slot. With no
encoder connected the frame is dropped at once; while the writer is busy (the encoder
is slow or SIGSTOPped) a newer frame replaces the waiting one, which is dropped. Drops
are counted, and the counting thread never waits.

The wire format, self-describing so that the encoder needs no duplicated settings, is
the frame socket's in people_counter.contract.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from people_counter.contract import FRAME_HEADER, FRAME_MAGIC, StreamHeader

log = logging.getLogger(__name__)

_POLL_S = 0.2
_SOCKET_MODE = 0o660  # the stream service's user reaches it through the shared group

Frame = npt.NDArray[np.uint8]


class FrameSink:
    """Hands annotated frames to the encoder; `offer` never blocks.

    The sink keeps a reference to each offered frame until it is written: the caller
    must not modify a frame after offering it (annotate_frame returns a fresh array).
    """

    def __init__(self, socket_path: Path, fps_hint: float) -> None:
        self.socket_path = Path(socket_path)
        self.fps_hint = float(fps_hint)
        self.sent = 0
        self.dropped = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: tuple[Frame, int, float] | None = None
        self._client: socket.socket | None = None
        self._closing = False
        self._listener = self._listen()
        self._thread = threading.Thread(target=self._run, name="frame-sink", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._client is not None

    def offer(self, frame_bgr: Frame) -> bool:
        """Hand one BGR frame over; never waits. False when this call dropped a frame.

        With no encoder connected the offered frame is dropped. Otherwise it takes the
        one-frame slot; an older frame still waiting there (the writer is busy: the encoder
        is slow or stopped) is dropped instead, so the encoder always gets the newest frame.
        """
        with self._lock:
            self._seq += 1
            if self._client is None or self._closing:
                self.dropped += 1
                return False
            replaced = self._pending is not None
            self._pending = (frame_bgr, self._seq, time.time())
            self._wake.notify()
            if replaced:
                self.dropped += 1
            return not replaced

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._listener.close()
        with contextlib.suppress(OSError):
            if self.socket_path.is_socket():
                self.socket_path.unlink()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> socket.socket:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        # A socket left by a killed counter refuses connections; replace it, but never
        # delete something that is not a socket (a mistyped path in the config).
        try:
            if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                self.socket_path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, _SOCKET_MODE)
        listener.listen(2)
        listener.setblocking(False)
        return listener

    def _run(self) -> None:
        # The connection that got the stream header, and the frame size it announced.
        header_for: tuple[socket.socket, tuple[int, int]] | None = None
        while True:
            with self._lock:
                if self._pending is None and not self._closing:
                    self._wake.wait(timeout=_POLL_S)
                if self._closing:
                    break
                item = self._pending
                self._pending = None
            self._accept_waiting()
            if item is None:
                continue
            frame, seq, ts = item
            client = self._client
            if client is None:
                with self._lock:
                    self.dropped += 1
                continue
            try:
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                shape = (frame.shape[1], frame.shape[0])
                if header_for is None or header_for[0] is not client:
                    self._send_all(client, StreamHeader(shape[0], shape[1], self.fps_hint).encode())
                    header_for = (client, shape)
                elif header_for[1] != shape:
                    # The encoder was started for another size: make it start anew.
                    raise ConnectionResetError("frame size changed")
                data = memoryview(frame).cast("B")
                self._send_all(client, FRAME_HEADER.pack(FRAME_MAGIC, len(data), seq, ts))
                self._send_all(client, data)
                self.sent += 1
            except (OSError, _Closing) as error:
                if not isinstance(error, _Closing):
                    log.info("encoder disconnected: %s", error)
                self._drop_client()
                header_for = None
                with self._lock:
                    self.dropped += 1
        self._drop_client()

    def _accept_waiting(self) -> None:
        """Take the newest waiting encoder; a newer one replaces a connected one (it restarted)."""
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("frame socket accept failed: %s", error)
                return
            conn.setblocking(False)
            if self._client is not None:
                log.info("a new encoder connected: replacing the previous connection")
            self._drop_client()
            with self._lock:
                self._client = conn

    def _drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _send_all(self, client: socket.socket, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._closing:
                raise _Closing
            try:
                n = client.send(view)
            except (BlockingIOError, InterruptedError):
                # The encoder is slow or stopped: wait without a deadline (the frame must
                # go whole), but wake up regularly to honour close(), and give up on this
                # connection when a new encoder connects (the stuck one was restarted).
                readable, _, _ = select.select([self._listener], [client], [], _POLL_S)
                if readable:
                    raise ConnectionResetError("replaced by a new encoder connection") from None
                continue
            view = view[n:]


class _Closing(Exception):
    """close() was called while a frame was in flight."""
