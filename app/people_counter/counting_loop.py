"""The counting loop: frames -> detector -> tracker -> counter -> store, MQTT, results, live view.

One thread counts. Decoding runs on the reader's thread and inference on
OpenVINO's, so the three overlap. Nothing the loop calls waits on a viewer,
the encoder or the broker: the publisher queues, the frame sink drops.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from people_counter.carry_over import carry_over, take_snapshot
from people_counter.config import Config, load_config
from people_counter.contract import state_message
from people_counter.counting.counter import PeopleCounter
from people_counter.counting.daily_reset import DailyReset
from people_counter.counting.line_override import LineOverride
from people_counter.errors import UserError
from people_counter.outputs.annotate import annotate_frame
from people_counter.outputs.frame_sink import FrameSink
from people_counter.outputs.mqtt_publisher import MqttPublisher
from people_counter.outputs.progress import Progress
from people_counter.outputs.results_file import ResultsWriter
from people_counter.outputs.store import CountStore, saved_media_position
from people_counter.stage_data import CounterState, CountingResult, DetectionResult, TrackerOutput
from people_counter.systemd_notify import ServiceNotifier
from people_counter.vision import appearance
from people_counter.vision.camera_credentials import read_credentials
from people_counter.vision.detection_rate import DetectionSchedule
from people_counter.vision.detector import PersonDetector
from people_counter.vision.source import CapturedFrame, FrameReader, parse_input, parse_substream
from people_counter.vision.tracker import PersonTracker

log = logging.getLogger("people_counter.counting_loop")

HOUSEKEEPING_INTERVAL_S = 1.0
SHUTDOWN_BUDGET_S = 4.0
LIVE_SAVE_INTERVAL_S = 1.0
"""How often the people in view are saved for a restart, in the input's own time."""
FPS_WINDOW_S = 5.0
"""The frames a second are those of the last few seconds: with no frames, 0 within this."""
UNFITTED_FRAME_SIZE = (1, 1)
"""The counter's pixel size before the first frame says the real one (see _fit_to_frames)."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    config_path: Path | None = None
    input_override: str | None = None
    results_path: Path | None = None
    realtime: bool | None = None
    mqtt_enabled: bool = True
    max_frames: int | None = None
    start_frame: int = 0
    store_dir: Path | None = None
    """Where the counts are kept; None means the config's state_dir (an offline run passes a temporary one)."""
    wait_for_input: bool = False
    """The service's way: an input that is not there at start is waited for (input "reconnecting"),
    as a dropped one is; a one-off run fails at once instead."""


class RateMeter:
    """Frames per second over the frames of the last `window_s` seconds (at most `most` of them),
    so that the rate falls to 0 once frames stop coming."""

    def __init__(self, window_s: float = FPS_WINDOW_S, most: int = 300) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque(maxlen=most)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def fps(self, now: float) -> float:
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class ReloadRequest:
    """Signal flags set by the handlers and read by the loop (handlers do no work themselves)."""

    def __init__(self) -> None:
        self.stop = False
        self.reload = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop = True

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self.reload = True


class CountingLoop:
    def __init__(self, config: Config, options: RunOptions, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        """The wall clock (Unix seconds) that the daily reset follows; tests pass their own."""
        self.options = options
        self.started_monotonic = time.monotonic()
        self.signals = ReloadRequest()
        self.notifier = ServiceNotifier()

        source = options.input_override or config.input.source
        credentials_file = config.input.credentials_file
        credentials = None if credentials_file is None else read_credentials(credentials_file)
        spec = parse_input(source, must_exist=not options.wait_for_input, credentials=credentials)
        # The camera's sub-stream goes with its configured source, not with an input given to `run`.
        substream = config.input.substream if options.input_override is None else None
        sub_spec = None if substream is None else parse_substream(substream, credentials)
        self.detector = PersonDetector(config.model, config.state_dir)
        realtime = config.input.realtime if options.realtime is None else options.realtime
        self.reader = FrameReader(
            spec,
            loop=config.input.loop,
            realtime=realtime,
            reconnect_initial_s=config.input.reconnect_initial_s,
            reconnect_max_s=config.input.reconnect_max_s,
            start_frame=options.start_frame,
            max_width=config.input.max_width,
            resume_at_s=saved_media_position(options.store_dir or config.state_dir) if config.input.loop else None,
            wait=options.wait_for_input,
            substream=sub_spec,
        )
        # The store comes last, so that a bad input or model leaves no database behind.
        self.store = CountStore(options.store_dir or config.state_dir, config.store.retention_days)
        totals, last_track_id = self.store.load()
        # A one-off run's input is open already; one waited for tells its size at its first frame.
        opened = self.reader.frame_size if self.reader.frame_size != (0, 0) else None
        self.frame_size: tuple[int, int] | None = None
        """The frames' size as counted, from the first frame on (_fit_to_frames)."""
        self.tracker = PersonTracker(config.tracker, first_id=last_track_id + 1, frame_size=opened)
        self.line_override = LineOverride(config.counting.override_file)
        self.line_override.poll()
        self.counter = PeopleCounter(
            self.line_override.applied_to(config.counting), opened or UNFITTED_FRAME_SIZE, totals
        )
        self.saved_live = self.store.load_live()
        self.schedule = DetectionSchedule(config.model.detect_fps)
        self.publisher = MqttPublisher(config.mqtt, config.device_id) if options.mqtt_enabled else None
        self.sink = FrameSink(config.stream.socket_path, config.stream.fps) if config.stream.enabled else None
        self.results: ResultsWriter | None = None
        self.daily_reset = DailyReset(config.counting.daily_reset, now=clock())
        self.progress = Progress.for_input(spec, config.input.loop, options.start_frame, options.max_frames)

        self.pending: dict[int, CapturedFrame] = {}
        """Frames read and not yet processed, by index; processed in this order."""
        self.skipped: set[int] = set()
        """Pending frames that the detection rate skips."""
        self.detections: dict[int, DetectionResult] = {}
        self.skipped_frames = 0
        self._last_clock_ts: float | None = None
        self._last_media_ts: float | None = None
        self._next_live_save_ts = float("-inf")
        self.meter = RateMeter()
        self.inference_ms = 0.0
        self.frames_done = 0
        self.first_done_at = 0.0
        self.last_done_at = 0.0
        self.latencies_ms: deque[float] = deque(maxlen=10_000)
        self._next_housekeeping = 0.0
        self._next_stream_ts = 0.0

    def run(self) -> int:
        self.signals.install()
        if self.publisher is not None:
            self.publisher.start()
        self.reader.start()
        # Ready with or without the input: one that is not there yet is waited for while the state
        # says so and the watchdog is fed, as for a drop.
        self.notifier.ready(
            f"counting {self.reader.spec.label} with {self.detector.inferences_per_frame} inference(s)/frame"
        )
        try:
            self._loop()
        finally:
            self._shutdown()
        if self.reader.failure is not None:
            raise self.reader.failure
        return 0

    def _loop(self) -> None:
        max_frames = self.options.max_frames
        submitted = 0
        while not self.signals.stop:
            if self.signals.reload:
                self.signals.reload = False
                self._reload()
            reading = max_frames is None or submitted < max_frames
            captured = self.reader.get(timeout=0.05) if reading else None
            if captured is not None:
                self._fit_to_frames(captured)
                self.pending[captured.index] = captured
                if self.schedule.due(captured.ts):
                    self.detector.submit(captured.index, captured.image)
                else:
                    self.skipped.add(captured.index)
                submitted += 1
            self._process_ready(self.detector.ready())
            self._housekeeping()
            if (self.reader.finished or not reading) and captured is None:
                break
        # A stop leaves requests in flight: their frames are counted too, and no
        # OpenVINO callback is left to run while the interpreter shuts down.
        self._process_ready(self.detector.drain())

    def _fit_to_frames(self, captured: CapturedFrame) -> None:
        """Give the tracker and the counting line the frames' size: at the first frame, which may
        come long after the start, and again if a camera comes back at another size."""
        size = (int(captured.image.shape[1]), int(captured.image.shape[0]))
        if size == self.frame_size:
            return
        if self.frame_size is not None:
            log.warning(
                "input %s: frames are now %dx%d; the people in view start afresh", self.reader.spec.label, *size
            )
            self._count(self.tracker.end_all(captured.ts))
        self.frame_size = size
        self.counter.line.set_frame_size(size)
        self.tracker = PersonTracker(self.config.tracker, first_id=self.tracker.next_id, frame_size=size)
        if self.options.results_path is not None and self.results is None:
            self.results = ResultsWriter(self.options.results_path, size)
        log.info(
            "counting %s (%dx%d at %.1f fps) as device %s",
            self.reader.spec.label,
            *size,
            self.reader.fps,
            self.config.device_id,
        )

    def _process_ready(self, results: list[DetectionResult]) -> None:
        """Process the frames whose turn has come, in the order they were read: a skipped frame
        waits for the detected frames before it."""
        for result in results:
            self.detections[result.frame_index] = result
        while self.pending:
            index = next(iter(self.pending))
            if index in self.skipped:
                self.skipped.discard(index)
                self.skipped_frames += 1
                captured = self.pending.pop(index)
                self._after_tracking(captured, self.tracker.predict(captured.ts), None)
            elif index in self.detections:
                self._process(self.detections.pop(index))
            else:
                return

    def _process(self, result: DetectionResult) -> None:
        captured = self.pending.pop(result.frame_index)
        media_ts = self._media_ts(captured)
        if self.saved_live is not None:
            ended = carry_over(self.saved_live, self.tracker, self.counter, captured.ts, media_ts)
            self.saved_live = None
            if ended is not None:
                self._count(ended)
        looks = appearance.describe(captured.image, result.boxes)
        tracks = self.tracker.update(result.boxes, captured.ts, looks)
        self._last_clock_ts, self._last_media_ts = captured.ts, media_ts
        self._count(tracks)
        if captured.ts >= self._next_live_save_ts:
            # Once a second of the input's time: a file counted faster than real time is saved as
            # often per frame as a camera, so a crash costs the same second either way. After the
            # count, so that the saved line sides are this frame's.
            self._next_live_save_ts = captured.ts + LIVE_SAVE_INTERVAL_S
            self._save_live()
        self._after_tracking(captured, tracks, result.inference_ms)

    def _media_ts(self, captured: CapturedFrame) -> float | None:
        """The frame's position in a recorded file, in seconds; None for a live source."""
        if self.reader.spec.kind != "file" or self.reader.fps <= 0.0:
            return None
        if self.config.input.loop and self.reader.frame_count > 0:
            return (captured.index % self.reader.frame_count) / self.reader.fps  # where in the file, this loop
        return captured.index / self.reader.fps

    def _after_tracking(self, captured: CapturedFrame, tracks: TrackerOutput, inference_ms: float | None) -> None:
        """What every frame gets, detected or skipped: the figures, the results line, the live view."""
        now = time.monotonic()
        self.meter.tick(now)
        if not self.frames_done:
            self.first_done_at = now
        self.last_done_at = now
        if inference_ms is not None:
            # A moving average, seeded by the first frame.
            self.inference_ms = 0.9 * self.inference_ms + 0.1 * inference_ms if self.inference_ms else inference_ms
        self.frames_done += 1
        self.progress.update(self.frames_done)
        state = self.state(captured.ts)
        if self.publisher is not None:
            self.publisher.publish_state(state)
        latency_ms = (time.monotonic() - captured.read_at) * 1000.0
        self.latencies_ms.append(latency_ms)
        if self.results is not None:
            self.results.write(captured.index, state, tracks, latency_ms, self._media_ts(captured))
        if self._stream_frame_due(captured.ts):
            self.sink.offer(
                annotate_frame(
                    captured.image,
                    tracks.visible,
                    self.counter.line_px,
                    state,
                    self.config.stream.blur_people,
                    self.config.stream.width,
                )
            )

    def _stream_frame_due(self, ts: float) -> bool:
        """Annotate only for a connected encoder, at the stream's rate: drawing is work the count doesn't need."""
        if self.sink is None or not self.sink.connected or ts < self._next_stream_ts:
            return False
        self._next_stream_ts = max(ts, self._next_stream_ts) + 1.0 / self.config.stream.fps
        return True

    def _count(self, tracks: TrackerOutput) -> None:
        result = self.counter.update(tracks)
        self.store.note_count(self.counter.count, tracks.ts)
        if result:
            # The tracker hands out ids in order, so the last one used is the one before its next.
            self.store.record(
                self.counter.totals,
                result,
                self.counter.count,
                tracks.ts,
                self.tracker.next_id - 1,
                take_snapshot(self.tracker, self.counter, tracks.ts, self._last_media_ts),
            )
            self._publish_result(result)

    def _publish_result(self, result: CountingResult) -> None:
        if self.publisher is None:
            return
        for event in result.events:
            self.publisher.publish_event(event)
        for alert in result.alerts:
            log.warning("alert: %s %.1f (threshold %.1f)", alert.type, alert.value, alert.threshold)
            self.publisher.publish_alert(alert)

    def state(self, ts: float | None = None) -> CounterState:
        totals = self.counter.totals
        return CounterState(
            count=self.counter.count,
            total=totals.total,
            in_count=totals.in_count,
            out_count=totals.out_count,
            avg_duration_s=totals.avg_duration_s,
            fps=self.meter.fps(time.monotonic()),
            inference_ms=self.inference_ms,
            dropped_frames=self.reader.dropped,
            input=self.reader.status,
            uptime_s=time.monotonic() - self.started_monotonic,
            ts=time.time() if ts is None else ts,
            store=self.store.status,
            input_down_s=self.reader.down_for(),
            input_stream=self.reader.stream,
            occupancy_alert=self.counter.occupancy_alert,
            loitering_alert=bool(self.counter.loitering_alerted),
            extra={
                "privacy_blur": self.config.stream.blur_people,
                "stream_dropped": self.sink.dropped if self.sink is not None else 0,
                "skipped_frames": self.skipped_frames,
            },
        )

    def _housekeeping(self) -> None:
        """Once a second: watchdog, heartbeat, resets, flushing. Never per frame."""
        now = time.monotonic()
        if now < self._next_housekeeping:
            return
        # On a fixed beat, so that a state is sent every second while the input is down.
        beat = HOUSEKEEPING_INTERVAL_S
        self._next_housekeeping = max(self._next_housekeeping, now - beat) + beat
        state = self.state()
        self.notifier.watchdog(
            f"{state.fps:.1f} fps, {state.count} in view"
            + ("" if state.input == "ok" else f", input {state.input} for {state.input_down_s:.0f} s")
            + ("" if state.store == "ok" else ", store degraded: counts held in memory")
        )
        self._check_line_override()
        if self.publisher is not None:
            self.publisher.publish_state(state, force=state.input == "reconnecting")
        wall = self.clock()
        if self.store.reset_requested():
            self._reset("requested by `people-counter reset`")
        elif self.daily_reset.due(wall):
            self.store.reset(wall)
            self._reset("daily reset time reached")
        self.store.flush(wall)  # also prunes rows past the retention period, hourly

    def _check_line_override(self) -> None:
        """A line placed on the dashboard applies as a reload would: counts and people in view kept."""
        if self.line_override.poll():
            self.counter.reconfigure(self.line_override.applied_to(self.config.counting))

    def _save_live(self) -> None:
        if self._last_clock_ts is not None:
            self.store.save_live(take_snapshot(self.tracker, self.counter, self._last_clock_ts, self._last_media_ts))

    def _reset(self, why: str) -> None:
        log.info("count reset: %s", why)
        self.counter.reset()
        if self.publisher is not None:
            self.publisher.publish_state(self.state(), force=True)

    def _reload(self) -> None:
        """SIGHUP: re-read the config; counts, tracks and the model stay as they are."""
        path = self.options.config_path
        if path is None or not path.exists():
            log.warning("reload: no config file to re-read")
            return
        try:
            new = load_config(path)
        except UserError as error:
            log.error("reload refused, keeping the running config: %s", error)
            return
        if new.input != self.config.input or new.model != self.config.model or new.state_dir != self.config.state_dir:
            log.warning("reload: input, model and state_dir changes take effect at the next restart")
        if self.options.mqtt_enabled and (new.mqtt != self.config.mqtt or new.device_id != self.config.device_id):
            # One client id at a time: a second connection would take the session over and fire the Will.
            if self.publisher is not None:
                self.publisher.stop(self.state())
            self.publisher = MqttPublisher(new.mqtt, new.device_id)
            try:
                self.publisher.start()
            except UserError as error:
                log.error("reload refused, keeping the running config: %s", error)
                self.publisher = MqttPublisher(self.config.mqtt, self.config.device_id)
                self.publisher.start()
                return
        if new.counting != self.config.counting:
            if new.counting.override_file != self.config.counting.override_file:
                self.line_override = LineOverride(new.counting.override_file)
                self.line_override.poll()
            self.counter.reconfigure(self.line_override.applied_to(new.counting))
            if new.counting.daily_reset != self.config.counting.daily_reset:
                self.daily_reset = DailyReset(new.counting.daily_reset, now=self.clock())
        if new.tracker != self.config.tracker:
            self.tracker.reconfigure(new.tracker)
        self.config = new.model_copy(
            update={
                "input": self.config.input,
                "model": self.config.model,
                "state_dir": self.config.state_dir,
            }
        )
        log.info("reloaded %s", path)

    def _shutdown(self) -> None:
        """Flush and say goodbye within the stop budget: SIGTERM must end in under 5 s."""
        deadline = time.monotonic() + SHUTDOWN_BUDGET_S
        self.notifier.stopping()
        self.detector.wait_idle()
        self.reader.stop()
        self.progress.finish()
        if self.signals.stop:
            # A stop (an upgrade, a reboot) is not the end of the visits in progress: the people in
            # view are saved and carried on by the next start, not counted again.
            self._save_live()
        else:
            # The input ended: so did every visit (their exits save the emptied view with them).
            self._count(self.tracker.end_all(time.time()))
        self.store.flush(time.time())
        final = self.state()
        if self.publisher is not None:
            self.publisher.stop(final)
        if self.sink is not None:
            self.sink.close()
        if self.results is not None:
            self.results.close()
        self.store.close()
        if time.monotonic() > deadline:
            log.warning("shutdown took longer than %.0f s", SHUTDOWN_BUDGET_S)
        lat = sorted(self.latencies_ms)
        if lat:
            # The first frame's time is the start, so model compilation is not counted.
            span = self.last_done_at - self.first_done_at
            log.info(
                "processed %d frames in %.3f s; latency p50 %.1f ms, p95 %.1f ms; totals: %s",
                self.frames_done - 1,
                span,
                lat[len(lat) // 2],
                lat[int(len(lat) * 0.95)],
                state_message(final),
            )


def run(config: Config, options: RunOptions) -> int:
    return CountingLoop(config, options).run()
