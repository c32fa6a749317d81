"""GET /metrics by Prometheus conventions, with prometheus_client on a registry of this dashboard's own.

What the registry holds (docs/metrics.md lists every metric):
- the process and platform collectors (this dashboard's process);
- counters that never go down, accumulated from the rises of the counter's figures in each `state`
  (the counter resets them daily and on restart: MonotonicTotals);
- histograms observed from the messages as they arrive: inference time from each `state`, the
  visit from each `exit` event;
- MQTT messages received, by kind;
- gauges read from the LiveFeed and the video source at scrape time (_LiveCollector).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from people_counter import __version__
from people_counter.contract import DeviceTopic
from people_counter.dashboard.config import MetricsConfig
from people_counter.dashboard.live import LiveFeed
from people_counter.dashboard.mjpeg import JpegSource
from people_counter.errors import ConfigError

INFERENCE_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
VISIT_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MESSAGE_KINDS: tuple[DeviceTopic, ...] = ("state", "event", "alert", "available")

_CROSSINGS = "Crossings of the counting line while this dashboard watched, by direction."
# The counter's figures that only grow until a reset: (state key, metric name, labels, help).
_STATE_COUNTERS: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("total", "peoplecounter_entries", {}, "People confirmed (entries) while this dashboard watched."),
    ("in", "peoplecounter_line_crossings", {"direction": "in"}, _CROSSINGS),
    ("out", "peoplecounter_line_crossings", {"direction": "out"}, _CROSSINGS),
    ("dropped_frames", "peoplecounter_dropped_frames", {}, "Input frames the counter had no time for."),
    ("skipped_frames", "peoplecounter_skipped_frames", {}, "Frames not sent to the detector on purpose."),
    ("stream_dropped", "peoplecounter_stream_dropped_frames", {}, "Live-view frames the encoder did not take."),
)


def _number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (a missing field is unknown, not an error)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class _ProcessCollector(ProcessCollector):
    """prometheus_client's process metrics, with the boot time from the clock instead of
    /proc/stat: the dashboard's unit hides everything in /proc but its own processes
    (ProcSubset=pid), and without a boot time the library's collector reports nothing."""

    def _boot_time(self) -> float:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class MonotonicTotals:
    """Counters that never go down, from figures that a reset starts again from 0.

    The first figure seen is the baseline (what was counted before this dashboard watched is not
    claimed as new); then a rise adds its difference, and a fall is a reset, after which the figure
    is all new. Only a reset that the figure outgrows between two states goes unseen, and the
    counter publishes a state on every change of these figures.
    """

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self.totals: dict[str, float] = {}

    def update(self, key: str, value: float) -> None:
        last = self._last.get(key)
        gained = 0.0 if last is None else value - last if value >= last else value
        self.totals[key] = self.totals.get(key, 0.0) + gained
        self._last[key] = value


def input_up(state: Mapping[str, Any]) -> bool:
    """Frames come: the counter says `input: ok` (it says `reconnecting` from the first failed open or read)."""
    return state.get("input") == "ok"


class _LiveCollector:
    """The figures that are read at scrape time: the latest state, the links, the video."""

    def __init__(self, feed: LiveFeed, video: JpegSource, totals: MonotonicTotals) -> None:
        self.feed = feed
        self.video = video
        self.totals = totals

    def collect(self) -> Iterable[Metric]:
        yield from self._counters()
        yield from self._state_gauges()
        yield from self._dashboard()

    def _counters(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for key, name, labels, help_text in _STATE_COUNTERS:
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(name, help_text, labels=list(labels))
            family.add_metric(list(labels.values()), self.totals.totals.get(key, 0.0))
        return families.values()

    def _state_gauges(self) -> Iterable[Metric]:
        state = self.feed.state
        fresh = self.feed.fresh()
        up = input_up(state)
        yield _gauge("peoplecounter_state_fresh", "1 while the counter's latest state is recent.", fresh)
        age = self.feed.state_age_s()
        if age is not None:
            yield _gauge("peoplecounter_state_age_seconds", "Age of the counter's latest state.", age)
        if not state:
            return
        yield _gauge("peoplecounter_input_up", "1 while frames come from the input.", up)
        # The state keeps its last fps while nothing counts: no frames, or no counter, is 0.
        fps = _number(state.get("fps")) if up and fresh else 0.0
        yield _gauge("peoplecounter_fps", "Frames counted per second; 0 while no frames come.", fps or 0.0)
        for key, name, help_text in (
            ("count", "peoplecounter_people_in_view", "People in view now."),
            ("input_down_s", "peoplecounter_input_down_seconds", "How long the input has been down."),
        ):
            value = _number(state.get(key))
            if value is not None:
                yield _gauge(name, help_text, value)
        entered, left = _number(state.get("in")), _number(state.get("out"))
        if entered is not None and left is not None:
            yield _gauge("peoplecounter_occupancy", "Crossings in minus out since the last reset.", entered - left)
        if state.get("store") in ("ok", "degraded"):
            yield _gauge("peoplecounter_store_ok", "1 while the counter's store can write.", state["store"] == "ok")
        uptime, ts = _number(state.get("uptime_s")), _number(state.get("ts"))
        if uptime is not None and ts is not None:
            yield _gauge("peoplecounter_start_time_seconds", "When the counter started, Unix time.", ts - uptime)

    def _dashboard(self) -> Iterable[Metric]:
        feed, video = self.feed, self.video
        encoder = video.encoder_health()
        yield _gauge(
            "peoplecounter_dashboard_mqtt_connected", "1 while the dashboard's MQTT link is up.", feed.broker_connected
        )
        if feed.available != "unknown":
            online = feed.available == "online"
            yield _gauge("peoplecounter_device_available", "1 while the counter says it is online.", online)
        yield _gauge("peoplecounter_stream_up", "1 while the encoder delivers video.", encoder["video"])
        yield _gauge("peoplecounter_stream_fps", "JPEGs per second from the encoder.", encoder["fps"] or 0.0)
        yield _gauge("peoplecounter_dashboard_viewers", "Open MJPEG viewers.", video.viewers)
        yield CounterMetricFamily(
            "peoplecounter_dashboard_jpegs_received", "JPEGs received from the encoder.", value=video.jpegs
        )
        yield CounterMetricFamily(
            "peoplecounter_dashboard_viewer_dropped_frames",
            "JPEGs skipped for slow viewers.",
            value=video.viewer_drops,
        )


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))


class DashboardMetrics:
    """One dashboard's metrics: a registry of its own, fed by the LiveFeed's messages."""

    def __init__(self, feed: LiveFeed, video: JpegSource) -> None:
        self.registry = CollectorRegistry()
        _ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.totals = MonotonicTotals()
        self._last_state_ts: float | None = None
        build = Gauge("peoplecounter_build_info", "The dashboard's version.", ["version"], registry=self.registry)
        build.labels(__version__).set(1)
        self.messages = Counter(
            "peoplecounter_dashboard_mqtt_messages",
            "MQTT messages the dashboard received, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in MESSAGE_KINDS:
            self.messages.labels(kind)
        self.inference = Histogram(
            "peoplecounter_inference_seconds",
            "Detector inference time, one observation per state.",
            buckets=INFERENCE_BUCKETS_S,
            registry=self.registry,
        )
        self.visit = Histogram(
            "peoplecounter_visit_seconds",
            "Visit length of each person who left.",
            buckets=VISIT_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(feed, video, self.totals))
        feed.listeners.append(self.on_message)

    def on_message(self, kind: DeviceTopic, data: Any) -> None:
        self.messages.labels(kind).inc()
        if kind == "state":
            self._on_state(data)
        elif kind == "event" and data.get("type") == "exit":
            duration = _number(data.get("duration_s"))
            if duration is not None and duration >= 0:
                self.visit.observe(duration)

    def _on_state(self, state: Mapping[str, Any]) -> None:
        for key, *_ in _STATE_COUNTERS:
            value = _number(state.get(key))
            if value is not None:
                self.totals.update(key, value)
        # A retained state heard again (a reconnect: the same ts) is not a new observation.
        ts = _number(state.get("ts"))
        if ts is None or ts == self._last_state_ts:
            return
        self._last_state_ts = ts
        inference_ms = _number(state.get("inference_ms"))
        if input_up(state) and inference_ms is not None and inference_ms > 0:
            self.inference.observe(inference_ms / 1000.0)

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition the scraper asked for (OpenMetrics or the text format), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"metrics.token_file: cannot read {path}: {error.strerror}") from None
    if not token:
        raise ConfigError(f"metrics.token_file: {path} is empty")
    return token


def metrics_handler(
    cfg: MetricsConfig, feed: LiveFeed, video: JpegSource
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics; with metrics.token_file, only for `Authorization: Bearer <token>`."""
    metrics = DashboardMetrics(feed, video)
    expected = None if cfg.token_file is None else ("Bearer " + read_token(cfg.token_file)).encode()

    async def handler(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if expected is not None and not hmac.compare_digest(given, expected):
            raise web.HTTPUnauthorized(text="metrics need a bearer token", headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return handler
