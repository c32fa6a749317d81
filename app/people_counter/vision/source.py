"""Video input: a file (optionally looped), a camera index, or an RTSP/HTTP URL.

Frames are read on a thread of their own so that decoding overlaps inference,
and so that a stream that drops is reopened with backoff while the counting
loop keeps publishing its state. The service's input may also be missing at
start (a camera that boots slower than the device, a mount that comes late):
it is then waited for the same way, not a reason to exit.

A network camera's low-resolution sub-stream (`input.substream`) is counted instead of its main
stream when configured: the main stream is the fallback while the sub-stream cannot be opened, and
the sub-stream is tried again, in the background, while the main one is counted.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from people_counter.config import is_stream_url, unsupported_scheme
from people_counter.errors import ConfigError, InputError
from people_counter.paths import SAMPLE_SOURCE, sample_video_path
from people_counter.stage_data import InputStatus, InputStream
from people_counter.vision.camera_credentials import CameraCredentials, redacted, with_credentials

log = logging.getLogger("people_counter.vision.source")

Frame = npt.NDArray[np.uint8]
SourceKind = Literal["file", "camera", "stream"]
SUBSTREAM_RETRY_S = 60.0
"""While the main stream stands in for the sub-stream, the sub-stream is tried again this often."""
# A file played in real time skips the frames it is this far behind on (see FrameReader).
REALTIME_MAX_LAG_S = 1.0


@dataclass(frozen=True, slots=True)
class InputSpec:
    kind: SourceKind
    target: str | int
    label: str


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    index: int
    ts: float
    image: Frame
    read_at: float
    """time.monotonic() when the frame was decoded: the start of its latency."""


def parse_input(source: str, must_exist: bool = True, credentials: CameraCredentials | None = None) -> InputSpec:
    """Decide what the configured source is, and check a file before anything starts.

    A file that is not there is an InputError when `must_exist` (a one-off run), and something to
    wait for otherwise (the service: a USB disk or a network mount may come after it). A URL of
    another scheme is a config error: no wait would make it work. `credentials` go into a stream's
    URL (the target opened), never into its label (what logs and the state show)."""
    if credentials is not None and not is_stream_url(source):
        raise ConfigError("input.credentials_file: only an rtsp or http(s) input takes a user and password")
    if source == SAMPLE_SOURCE:
        path = sample_video_path()
        if not path.is_file():
            raise InputError(f"sample video not found at {path}: run `people-counter sample` first")
        return _file_spec(path, must_exist)
    if source.isdigit():
        return InputSpec("camera", int(source), f"camera {source}")
    if is_stream_url(source):
        target = source if credentials is None else with_credentials(source, credentials)
        return InputSpec("stream", target, redacted(source))
    problem = unsupported_scheme(source)
    if problem is not None:
        raise ConfigError(f"input.source: {problem}")
    return _file_spec(Path(source), must_exist)


def parse_substream(url: str, credentials: CameraCredentials | None = None) -> InputSpec:
    """The sub-stream's spec (the config checked its scheme); the camera's credentials go into it too."""
    target = url if credentials is None else with_credentials(url, credentials, "input.substream")
    return InputSpec("stream", target, redacted(url))


def _file_spec(path: Path, must_exist: bool) -> InputSpec:
    if not path.exists():
        if must_exist:
            raise InputError(f"input file {path} does not exist")
        return InputSpec("file", str(path), str(path))
    if not path.is_file():
        raise InputError(f"input {path} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"input file {path} is not readable")
    return InputSpec("file", str(path), str(path))


def _open_capture(spec: InputSpec) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(spec.target)
    return capture


class FrameReader:
    """Reads frames into a small queue on its own thread.

    Outside a one-off run (``wait=True``) the input is opened on the reader's thread, so that one
    which is not there yet (or an RTSP open that takes its time) holds nothing up: until it opens,
    the status is "reconnecting" and it is retried with the same backoff as a drop.

    Files are read without loss as fast as counting goes (``realtime=False``): the
    reader waits for room in the queue. Live sources never wait: when counting falls
    behind, the oldest queued frame is dropped and counted, so the count follows the
    present, not a backlog. A file played in real time stands in for a camera and does
    the same: a frame more than ``REALTIME_MAX_LAG_S`` behind the clock is skipped and
    counted, so that a busy spell leaves no lasting lag behind it.

    With a `substream` (the same camera's low-resolution stream), that is what is read; `spec`, the
    main stream, stands in while it cannot be opened. Each retry with the backoff alternates between
    the two, starting with the one that dropped. While the main stream is read, the sub-stream is
    opened again every `substream_retry_s` on a thread of its own (a camera's open can take seconds,
    and the main stream's frames keep coming meanwhile), and read as soon as it gives a frame.
    `spec` is the stream being read (or tried last), `stream` which of the two it is.
    """

    def __init__(
        self,
        spec: InputSpec,
        *,
        loop: bool,
        realtime: bool,
        reconnect_initial_s: float,
        reconnect_max_s: float,
        queue_size: int = 4,
        start_frame: int = 0,
        max_width: int | None = None,
        resume_at_s: float | None = None,
        wait: bool = False,
        clock: Callable[[], float] = time.monotonic,
        substream: InputSpec | None = None,
        substream_retry_s: float = SUBSTREAM_RETRY_S,
    ) -> None:
        if substream is not None:
            # Every log line then says which of the camera's streams it is about.
            spec = replace(spec, label=f"main stream {spec.label}")
            substream = replace(substream, label=f"sub-stream {substream.label}")
        self._main = spec
        self._substream = substream
        self._substream_retry_s = substream_retry_s
        self._probe: _Probe | None = None
        self._next_probe = 0.0
        self.spec = spec if substream is None else substream
        self.stream: InputStream = "main" if substream is None else "sub"
        """The stream counted (the one last opened); it changes only when another one opens."""
        self._max_width = max_width
        self.loop = loop
        self.realtime = realtime
        self._backoff = (reconnect_initial_s, reconnect_max_s)
        self._queue: queue.Queue[CapturedFrame] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = clock
        self.status: InputStatus = "ok"
        self._down_since: float | None = None
        self.failure: InputError | None = None
        """Set when an input that was waited for turned out never to work (a file that is not a video)."""
        self.dropped = 0
        self.reconnects = 0
        self.frame_size: tuple[int, int] = (0, 0)
        self.fps: float = 0.0
        self._start_frame = start_frame if spec.kind == "file" else 0
        self._resume_at_s = resume_at_s if spec.kind == "file" else None
        self.frame_count = 0
        """Frames in a file, as its container says (0: unknown, or not a file)."""
        self._capture: cv2.VideoCapture | None = None
        self._first: Frame | None = None
        if wait:
            self._went_down()
        elif not self._open(self.spec) and (substream is None or not self._open(self._main)):
            raise InputError(f"input {self.spec.label}: cannot be opened")

    def _went_down(self) -> None:
        self.status = "reconnecting"
        if self._down_since is None:
            self._down_since = self._clock()

    def down_for(self) -> float:
        """Seconds since the input's first failed open or read; 0.0 while it is up."""
        return 0.0 if self._down_since is None else self._clock() - self._down_since

    def _open(self, spec: InputSpec) -> bool:
        """Open the input `spec` (the main stream or the sub-stream) and read its first frame: True,
        False if it is not there (yet), or an InputError if it can never be read (a file that is
        not a video, or too short)."""
        self.spec = spec
        if self.spec.kind == "file" and not Path(str(self.spec.target)).exists():
            return False  # not mounted yet, or not copied yet: nothing for OpenCV to warn about
        capture = _open_capture(self.spec)
        if not capture.isOpened():
            capture.release()
            if self.spec.kind == "file":
                raise InputError(f"input {self.spec.label}: not a video OpenCV can decode")
            return False
        self.fps = _frame_rate(capture)
        if self.spec.kind == "file":
            self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        if self._resume_at_s is not None and self._start_frame == 0 and self.frame_count > 0:
            # A looping file stands in for a camera: after a restart it goes on from the frame
            # after the one the last run saved, as a camera would, not from the start.
            self._start_frame = (round(self._resume_at_s * self.fps) + 1) % self.frame_count
        for _ in range(self._start_frame):
            # Decoding is exact where seeking is not (seek lands on key frames).
            if not capture.grab():
                capture.release()
                raise InputError(f"input {self.spec.label}: has fewer than {self._start_frame} frames")
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            if self.spec.kind == "file":
                raise InputError(f"input {self.spec.label}: no frame could be read (not a video?)")
            return False
        self._adopt(capture, first)
        return True

    def _adopt(self, capture: cv2.VideoCapture, first: Frame) -> None:
        """Read from `capture` (just opened) from now on, starting with its `first` frame."""
        first = self._scaled(first)
        self.stream = "sub" if self.spec is self._substream else "main"
        self.frame_size = (int(first.shape[1]), int(first.shape[0]))
        self._first = first
        self._capture = capture
        self._down_since = None
        self.status = "ok"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._probe is not None:
            self._probe.abandon()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                log.warning("input %s: the reader did not stop within 2 s", self.spec.label)
                return  # it still uses the capture; the process exit releases it
        if self._capture is not None:
            self._capture.release()

    def get(self, timeout: float) -> CapturedFrame | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def finished(self) -> bool:
        """True once a file ended and every frame read has been handed out."""
        return self.status == "ended" and self._queue.empty()

    def _run(self) -> None:
        try:
            if self._capture is None and not self._reconnect():
                return  # stopped while waiting
        except InputError as error:  # the counting loop ends and raises it
            self.failure = error
            self.status = "ended"
            return
        index = self._start_frame
        period = 1.0 / self.fps
        started = time.time()
        while not self._stop.is_set():
            self._back_to_substream()
            frame = self._next_frame()
            if frame is None:
                if self.spec.kind == "file":
                    if self.loop and self._capture is not None:
                        self._capture.release()
                        self._capture = _open_capture(self.spec)
                        if self._capture.isOpened():
                            continue
                        log.error("input %s could not be reopened for the next loop", self.spec.label)
                    self.status = "ended"
                    return
                self._went_down()
                self._reconnect()
                continue
            # Recorded video keeps its own clock (frames over the file's rate, across loops),
            # so the tracker's time gaps mean the same at any processing speed.
            # From the first frame read, not from the file's start: a file played in real time
            # from frame N (a looping file resuming after a restart) must not wait N frames.
            file_ts = started + (index - self._start_frame) * period
            if self.spec.kind != "file":
                self._put_latest(CapturedFrame(index, time.time(), frame, time.monotonic()))
            elif not self.realtime:
                self._put_waiting(CapturedFrame(index, file_ts, frame, time.monotonic()))
            elif self._on_time(file_ts):
                # In real time a file stands in for a camera: a slow consumer gets the newest
                # frames, and the ones it had no time for are dropped (and counted).
                self._put_latest(CapturedFrame(index, file_ts, frame, time.monotonic()))
            else:
                self.dropped += 1
            index += 1

    def _on_time(self, ts: float) -> bool:
        """Wait for a frame's moment on the file's clock; False if that moment is long past."""
        delay = ts - time.time()
        if delay > 0:
            self._stop.wait(delay)
        return -delay <= REALTIME_MAX_LAG_S

    def _back_to_substream(self) -> None:
        """While the main stream stands in: try the sub-stream every `substream_retry_s`, on a
        thread of its own, and read it from the first frame it gives."""
        if self._substream is None or self.stream != "main" or self._capture is None:
            return
        probe = self._probe
        if probe is None:
            if time.monotonic() >= self._next_probe:
                self._probe = _Probe(self._substream)
                self._probe.start()
            return
        if probe.is_alive():
            return
        self._probe = None
        opened = probe.opened
        if opened is None:
            log.debug("input %s still cannot be opened; next try in %.0f s", probe.spec.label, self._substream_retry_s)
            self._next_probe = time.monotonic() + self._substream_retry_s
            return
        capture, first = opened
        log.warning("input %s answers: counting it instead of the %s", self._substream.label, self._main.label)
        self._capture.release()
        self.spec = self._substream
        self.fps = _frame_rate(capture)
        self._adopt(capture, first)

    def _next_frame(self) -> Frame | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        if self._capture is None:
            return None
        ok, frame = self._capture.read()
        return self._scaled(frame) if ok and frame is not None else None

    def _scaled(self, frame: Frame) -> Frame:
        """The decoded frame at the size everything downstream uses: no wider than `max_width`.

        Scaled once, right after decoding, so that no full-size copy outlives its decode: a
        1080p camera costs the detector, the tracker's descriptors and the live view no more
        than a smaller one. Bilinear: from 1080p INTER_AREA took about 7 ms a frame here against
        1.2 ms, for no difference the 416-pixel detector input can see."""
        height, width = frame.shape[:2]
        if self._max_width is None or width <= self._max_width:
            return frame
        size = (self._max_width, max(1, round(height * self._max_width / width)))
        scaled: Frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        return scaled

    def _put_waiting(self, item: CapturedFrame) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _put_latest(self, item: CapturedFrame) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _reconnect(self) -> bool:
        """Open an input that is not there yet, or reopen a dropped one, with exponential backoff;
        one warning line a step at most. True once it is open, False on a stop. Counts are kept by
        the caller. With a sub-stream, the tries alternate between the two streams, starting with
        the one that dropped (or the sub-stream, at start)."""
        delay, ceiling = self._backoff
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        if self._probe is not None:  # the tries below take the sub-stream's turn
            self._probe.abandon()
            self._probe = None
        dropped = self.frame_size != (0, 0)
        order = [self.spec] if self._substream is None else [self.spec, self._main_or_sub(self.spec)]
        failed: dict[InputStream, str] = {}
        tries = 0
        while not self._stop.is_set():
            if self._open(order[tries % len(order)]):
                if dropped:
                    self.reconnects += 1
                self._log_opened(dropped, failed)
                return True
            if self.spec.kind == "file":
                why = "does not exist (yet)"
            else:
                why = "dropped" if dropped and tries == 0 else "cannot be opened (yet)"
            failed["sub" if self.spec is self._substream else "main"] = why
            tries += 1
            following = order[tries % len(order)]
            then = "" if following is self.spec else f" (then the {following.label})"
            log.warning("input %s %s; retrying in %.0f s%s", self.spec.label, why, delay, then)
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2.0, ceiling)
        return False

    def _main_or_sub(self, spec: InputSpec) -> InputSpec:
        """The camera's other stream."""
        assert self._substream is not None
        return self._main if spec is self._substream else self._substream

    def _log_opened(self, dropped: bool, failed: dict[InputStream, str]) -> None:
        """One line: the input is open or back, and with a sub-stream, which stream is counted and why."""
        state = "back" if dropped else "open"
        if self.stream == "sub" or self._substream is None or "sub" not in failed:
            log.info("input %s is %s", self.spec.label, state)
            return
        why = failed.get("sub", "cannot be opened")
        log.warning(
            "input %s is %s and counted: the %s %s (it is tried again every %g s)",
            self.spec.label,
            state,
            self._substream.label,
            why,
            self._substream_retry_s,
        )
        self._next_probe = time.monotonic() + self._substream_retry_s


def _frame_rate(capture: cv2.VideoCapture) -> float:
    """The stream's frame rate, as its container says; 10 when it says nothing plausible."""
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if 1.0 <= fps <= 120.0 else 10.0


class _Probe(threading.Thread):
    """Opens a stream and reads its first frame on a thread of its own: `opened` is then the
    capture and that frame, or None if it failed. A probe abandoned (the reader stopped) releases
    what it opened."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__(name="substream-probe", daemon=True)
        self.spec = spec
        self.opened: tuple[cv2.VideoCapture, Frame] | None = None
        self._abandoned = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        capture = _open_capture(self.spec)
        first: Frame | None = None
        if capture.isOpened():
            ok, frame = capture.read()
            first = frame if ok else None
        with self._lock:
            if first is not None and not self._abandoned.is_set():
                self.opened = (capture, first)
                return
        capture.release()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned.set()
            if self.opened is not None:
                self.opened[0].release()
                self.opened = None
