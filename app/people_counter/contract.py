"""The contracts between the programs, in one place.

- MQTT (DESIGN.md, "MQTT contract"): the topics, loaded from mqtt_topics.yml (which the mosquitto
  role reads too, for its ACL), and the payloads as typed dicts with the functions that make them.
  The counter's publisher writes them and the dashboard reads them.
- The frame socket: the counter (outputs.frame_sink) hands annotated frames to the encoder
  (people-counter-stream).
- The JPEG socket: the encoder hands JPEGs and its status to the dashboard (dashboard.mjpeg).

Nothing else in the package writes a topic or a socket framing.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import yaml

if TYPE_CHECKING:
    from people_counter.stage_data import Alert, CounterState, InputStatus, InputStream, PersonEvent, StoreStatus

# -- MQTT topics ---------------------------------------------------------------------------------

TOPICS_FILE = Path(__file__).with_name("mqtt_topics.yml")
"""The topics as data, shipped in the wheel: the mosquitto role reads this file too."""

DeviceTopic = Literal["state", "event", "alert", "available"]


def _load_topics(path: Path) -> tuple[str, dict[str, str], dict[str, str], str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    prefix, device, compat = data["prefix"], data["device"], data["compat"]
    if set(device) != {"state", "event", "alert", "available"} or set(compat) != {"count", "duration"}:
        raise ValueError(f"{path}: the device topics must be state, event, alert, available; compat count, duration")
    return (
        str(prefix),
        {str(k): str(v) for k, v in device.items()},
        {str(k): str(v) for k, v in compat.items()},
        str(data["discovery_prefix"]),
    )


DEFAULT_TOPIC_PREFIX, _DEVICE_TOPICS, _COMPAT_TOPICS, DEFAULT_DISCOVERY_PREFIX = _load_topics(TOPICS_FILE)

BRIDGE_TOPIC = str(yaml.safe_load(TOPICS_FILE.read_text(encoding="utf-8"))["bridge"])
"""<prefix>/<device_id>/<this>: the device's bridge link on the central broker, retained `1` or `0`
(its Mosquitto's notification topic, with the central broker's Last Will `0`)."""
BRIDGE_UP = "1"
BRIDGE_DOWN = "0"

COMPAT_COUNT_TOPIC = _COMPAT_TOPICS["count"]
"""The original app's count topic: {"count": n, "total": m} in one message."""
COMPAT_DURATION_TOPIC = _COMPAT_TOPICS["duration"]
"""The original app's dwell topic: {"duration": s}; its UI counts these messages as the total."""
COMPAT_TOPICS = (COMPAT_COUNT_TOPIC, COMPAT_DURATION_TOPIC)

HaComponent = Literal["sensor", "binary_sensor"]


def discovery_topic(discovery_prefix: str, component: HaComponent, device_id: str, object_id: str) -> str:
    """A Home Assistant discovery config topic: <prefix>/<component>/<node_id>/<object_id>/config.

    The node_id is the device_id with what Home Assistant refuses in one made '_' (mqtt_topics.yml).
    """
    node_id = re.sub(r"[^A-Za-z0-9_-]", "_", device_id)
    return f"{discovery_prefix}/{component}/{node_id}/{object_id}/config"


AVAILABLE_ONLINE = "online"
AVAILABLE_OFFLINE = "offline"
"""The `available` payloads; the Last Will sets `offline`."""


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """One device's topics: <prefix>/<device_id>/<topic>."""

    prefix: str
    device_id: str

    def topic(self, name: DeviceTopic) -> str:
        return f"{self.prefix}/{self.device_id}/{_DEVICE_TOPICS[name]}"

    @property
    def state(self) -> str:
        return self.topic("state")

    @property
    def event(self) -> str:
        return self.topic("event")

    @property
    def alert(self) -> str:
        return self.topic("alert")

    @property
    def available(self) -> str:
        return self.topic("available")

    def by_topic(self) -> dict[str, DeviceTopic]:
        """Each full topic and what it carries, for a subscriber's dispatch."""
        names: tuple[DeviceTopic, ...] = ("state", "event", "alert", "available")
        return {self.topic(name): name for name in names}


# -- MQTT payloads -------------------------------------------------------------------------------

StateMessage = TypedDict(
    "StateMessage",
    {
        "count": int,
        "total": int,
        "in": int,
        "out": int,
        "avg_duration_s": float,
        "fps": float,
        "inference_ms": float,
        "dropped_frames": int,
        "input": "InputStatus",
        "uptime_s": float,
        "ts": float,
        "store": "StoreStatus",
        "input_down_s": float,
        "input_stream": "InputStream",
        "occupancy_alert": bool,
        "loitering_alert": bool,
    },
)
"""The retained `state`; the counter adds a few figures of its own (CounterState.extra)."""


class EventMessage(TypedDict):
    type: Literal["enter", "exit"]
    track_id: int
    ts: float
    duration_s: float | None


class AlertMessage(TypedDict):
    type: Literal["occupancy", "loitering"]
    value: float
    threshold: float
    ts: float


class CompatCountMessage(TypedDict):
    count: int
    total: int


class CompatDurationMessage(TypedDict):
    duration: float


def state_message(state: CounterState) -> dict[str, object]:
    """The `state` payload: a StateMessage, then the counter's extra figures."""
    message: StateMessage = {
        "count": state.count,
        "total": state.total,
        "in": state.in_count,
        "out": state.out_count,
        "avg_duration_s": round(float(state.avg_duration_s), 2),
        "fps": round(float(state.fps), 2),
        "inference_ms": round(float(state.inference_ms), 2),
        "dropped_frames": state.dropped_frames,
        "input": state.input,
        "uptime_s": round(float(state.uptime_s), 2),
        "ts": round(state.ts, 3),
        "store": state.store,
        "input_down_s": round(float(state.input_down_s), 1),
        "input_stream": state.input_stream,
        "occupancy_alert": state.occupancy_alert,
        "loitering_alert": state.loitering_alert,
    }
    return {**message, **state.extra}


def event_message(event: PersonEvent) -> EventMessage:
    return {
        "type": event.type,
        "track_id": event.track_id,
        "ts": round(event.ts, 3),
        "duration_s": None if event.duration_s is None else round(event.duration_s, 2),
    }


def alert_message(alert: Alert) -> AlertMessage:
    return {
        "type": alert.type,
        "value": round(float(alert.value), 2),
        "threshold": round(float(alert.threshold), 2),
        "ts": round(alert.ts, 3),
    }


def compat_count_message(count: int, total: int) -> CompatCountMessage:
    # One message with both figures: a lone {"total": n} blanks the original UI's count.
    return {"count": count, "total": total}


def compat_duration_message(duration_s: float | None) -> CompatDurationMessage:
    return {"duration": round(duration_s or 0.0, 2)}


def payload(message: Mapping[str, object]) -> str:
    """A message as it goes on the wire: compact JSON."""
    return json.dumps(message, separators=(",", ":"), default=str)


# -- The frame socket: counter -> encoder ----------------------------------------------------------
#
# Self-describing, so that the encoder needs no duplicated settings:
#     the stream header, once per connection (a size change reconnects):
#         STREAM_MAGIC + JSON {"width", "height", "pix_fmt": "bgr24", "fps"} + b"\n"
#     then for each frame: FRAME_HEADER (FRAME_MAGIC, payload length u32, sequence u64, the
#         wall-clock time f64 at which the counter offered it; little-endian), then
#         width*height*3 bytes.
# A frame is written whole or the connection is closed: the reader discards a frame cut short
# by EOF, so no partial frame ever reaches ffmpeg.

STREAM_MAGIC = b"PCFS1 "
FRAME_MAGIC = b"PCFR"
FRAME_HEADER = struct.Struct("<4sIQd")
MAX_HEADER_LINE = 4096


@dataclass(frozen=True, slots=True)
class StreamHeader:
    width: int
    height: int
    fps: float
    pix_fmt: str = "bgr24"

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3

    def encode(self) -> bytes:
        body = {"width": self.width, "height": self.height, "pix_fmt": self.pix_fmt, "fps": self.fps}
        return STREAM_MAGIC + json.dumps(body).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> StreamHeader:
        if not line.startswith(STREAM_MAGIC) or not line.endswith(b"\n"):
            raise ValueError("not a people-counter frame stream")
        data = json.loads(line[len(STREAM_MAGIC) :])
        header = cls(int(data["width"]), int(data["height"]), float(data["fps"]), str(data["pix_fmt"]))
        if header.pix_fmt != "bgr24" or header.width <= 0 or header.height <= 0 or header.fps <= 0:
            raise ValueError(f"unsupported frame stream {data}")
        return header


# -- The JPEG socket: encoder -> dashboard ---------------------------------------------------------
#
# One message after another: TYPE (1 byte) + length (u32, LE) + body.
#   MSG_JPEG: JPEG_META (source frame sequence u64, the frame's offer() time f64) + the JPEG;
#   MSG_STATUS: JSON EncoderStatus, on every change and at least every STATUS_EVERY_S, so that
#       a stopped encoder is noticed.

MSG_HEADER = struct.Struct("<cI")
JPEG_META = struct.Struct("<Qd")
MSG_JPEG = b"J"
MSG_STATUS = b"S"
STATUS_EVERY_S = 1.0


def jpeg_message(jpeg: bytes, seq: int, ts: float) -> bytes:
    return MSG_HEADER.pack(MSG_JPEG, JPEG_META.size + len(jpeg)) + JPEG_META.pack(seq, ts) + jpeg


@dataclass
class EncoderStatus:
    """The encoder's status message: what the dashboard's health panel shows about it."""

    state: str = "starting"  # starting | waiting (no counter) | running | restarting
    frames_in: int = 0
    jpegs_out: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    source_fps: float = 0.0
    restarts: int = 0
    last_error: str = ""
    pid: int = field(default_factory=os.getpid)
    since: float = field(default_factory=time.time)

    def message(self) -> bytes:
        body = json.dumps({**asdict(self), "ts": time.time()}).encode()
        return MSG_HEADER.pack(MSG_STATUS, len(body)) + body
