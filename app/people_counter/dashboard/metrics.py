"""/metrics in the Prometheus text format: the counter's figures plus the dashboard's own."""

from __future__ import annotations

from people_counter.dashboard.live import LiveFeed
from people_counter.dashboard.mjpeg import JpegSource

# (state key, metric name, type, help)
_STATE_METRICS = (
    ("count", "people_counter_count", "gauge", "People in view now."),
    ("total", "people_counter_total", "gauge", "Confirmed people since the last reset."),
    ("in", "people_counter_in", "gauge", "Line crossings in, since the last reset."),
    ("out", "people_counter_out", "gauge", "Line crossings out, since the last reset."),
    ("avg_duration_s", "people_counter_avg_duration_seconds", "gauge", "Mean dwell time of finished tracks."),
    ("fps", "people_counter_fps", "gauge", "Frames counted per second."),
    ("inference_ms", "people_counter_inference_ms", "gauge", "Detector inference time per frame."),
    ("dropped_frames", "people_counter_dropped_frames", "gauge", "Input frames the counter dropped."),
    ("uptime_s", "people_counter_uptime_seconds", "gauge", "Seconds since the counter started."),
)


def _line(name: str, kind: str, help_text: str, value: float, labels: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {value:g}"]


def render_metrics(feed: LiveFeed, video: JpegSource) -> str:
    labels = f'{{device="{feed.cfg.device_id}"}}'
    lines: list[str] = []
    for key, name, kind, help_text in _STATE_METRICS:
        value = feed.state.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            lines += _line(name, kind, help_text, float(value), labels)
    age = feed.state_age_s()
    encoder = video.encoder_health()
    lines += _line(
        "people_counter_state_fresh",
        "gauge",
        "1 while the state is younger than the limit.",
        1.0 if feed.fresh() else 0.0,
        labels,
    )
    if age is not None:
        lines += _line("people_counter_state_age_seconds", "gauge", "Age of the latest state.", age, labels)
    lines += _line(
        "people_counter_dashboard_broker_connected",
        "gauge",
        "1 while the dashboard's MQTT link is up.",
        1.0 if feed.broker_connected else 0.0,
        labels,
    )
    lines += _line(
        "people_counter_stream_up",
        "gauge",
        "1 while the encoder delivers video.",
        1.0 if encoder["video"] else 0.0,
        labels,
    )
    lines += _line(
        "people_counter_stream_fps", "gauge", "JPEGs per second from the encoder.", float(encoder["fps"] or 0.0), labels
    )
    lines += _line("people_counter_dashboard_viewers", "gauge", "Open MJPEG viewers.", float(video.viewers), labels)
    lines += _line(
        "people_counter_dashboard_viewer_dropped_frames_total",
        "counter",
        "JPEGs skipped for slow viewers.",
        float(video.viewer_drops),
        labels,
    )
    return "\n".join(lines) + "\n"
