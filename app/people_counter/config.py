"""The counter's one config file, loaded into one typed model.

Every section refuses unknown keys, so that a typo fails at load time with the
field's name instead of being silently ignored on a device.
"""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from people_counter.contract import DEFAULT_DISCOVERY_PREFIX, DEFAULT_TOPIC_PREFIX
from people_counter.errors import ConfigError
from people_counter.prepare.model_catalog import CATALOG, DEFAULT_MODEL_NAME, ModelName

DEFAULT_CONFIG_PATH = Path("/etc/people-counter/config.yml")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
"""The URL schemes of a network camera's stream (OpenCV's FFmpeg backend opens them)."""


def is_stream_url(value: str) -> bool:
    return value.lower().startswith(STREAM_SCHEMES)


def unsupported_scheme(value: str) -> str | None:
    """What is wrong with a URL of a scheme no camera stream has; None for a stream URL or no URL."""
    scheme, sep, _rest = value.partition("://")
    if not sep or is_stream_url(value):
        return None
    return f"unsupported URL scheme {scheme!r} (expected {', '.join(s[:-3] for s in STREAM_SCHEMES)})"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(Section):
    """Where frames come from: a file path, a camera index or an rtsp/http(s) URL."""

    source: str = "sample"
    loop: bool = False
    realtime: bool = True
    reconnect_initial_s: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_s: float = Field(default=10.0, gt=0, le=3600)
    max_width: int | None = Field(default=960, ge=160, le=7680)
    """Frames wider than this are scaled down right after decoding (None: never). The detector's
    input is 416 pixels wide, so a 1080p camera gains nothing from its full size but the cost."""
    credentials_file: Path | None = None
    """A network camera's `user:password` (first line), put into the URL only to open it: on a
    device, the systemd credential the role installs, so that no password is in this file."""
    substream: str | None = None
    """The same camera's low-resolution stream (an rtsp/http(s) URL): counted instead of `source`,
    which is then the fallback while the sub-stream cannot be opened. Decoding 1080p is most of the
    CPU a camera costs, and the detector sees no more of it than of 640x360."""

    @field_validator("source")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a file, a camera index or a URL")
        return value.strip()

    @field_validator("substream")
    @classmethod
    def _a_stream_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not is_stream_url(value):
            problem = unsupported_scheme(value)
            raise ValueError(problem or f"not a URL (expected {', '.join(s[:-3] for s in STREAM_SCHEMES)})")
        return value

    @model_validator(mode="after")
    def _substream_of_a_network_camera(self) -> InputConfig:
        if self.substream is not None and not is_stream_url(self.source):
            raise ValueError("substream: a camera's sub-stream needs source to be that camera's rtsp/http(s) URL")
        return self


class ModelConfig(Section):
    """The detector: the catalog model `name`, prepared under the state directory, or any IR at `path`."""

    name: ModelName = DEFAULT_MODEL_NAME
    path: Path | None = None
    device: Literal["CPU", "GPU", "NPU", "AUTO"] = "CPU"
    # None: the default measured for the model `name` (see min_score). For ssdlite, 0.3 is
    # the middle of the flat region (0.2-0.4) of the tracked count's error against hand
    # counts of the sample video (see the README); tiles cost 2x ("2x1") or 5x ("2x2")
    # the inference and did not lower that error measurably.
    score_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    nms_iou: float = Field(default=0.5, gt=0.0, lt=1.0)
    tiles: Literal["none", "2x1", "2x2"] = "none"
    infer_requests: int = Field(default=3, ge=1, le=16)
    detect_fps: float | None = Field(default=10.0, gt=0.0, le=60.0)
    """Frames detected a second at most (None: every frame); the tracker predicts in between. Ten
    keeps identities on the sample video (fewer lost them), and a 25 fps camera costs no more."""
    min_box_height: float = Field(default=0.04, ge=0.0, lt=1.0)
    max_box_height: float = Field(default=0.9, gt=0.0, le=1.0)

    @property
    def min_score(self) -> float:
        """The score a detection needs: `score_threshold`, else the one measured for `name`."""
        return self.score_threshold if self.score_threshold is not None else CATALOG[self.name].score_threshold


class TrackerConfig(Section):
    """Track life cycle. Gaps up to `max_gap_s` are bridged, so a missed frame never makes a new person."""

    confirm_hits: int = Field(default=3, ge=1, le=30)
    # The three defaults below are the ones that gave the sample video's ground truth the same
    # IDF1 (0.79-0.83) and total (20-21) on seven copies of it (10 and 25-30 fps, 576p to 1080p,
    # mirrored): docs/benchmarks.md. Tuned on the original alone, they had given it 0.84 and the
    # copies 0.66-0.77.
    max_gap_s: float = Field(default=2.5, gt=0.0, le=60.0)
    match_iou: float = Field(default=0.3, gt=0.0, lt=1.0)
    high_score: float = Field(default=0.55, gt=0.0, lt=1.0)
    reid_window_s: float = Field(default=10.0, ge=0.0, le=600.0)
    """A track lost for longer than `max_gap_s` leaves the count in view but keeps its id this long:
    a person confirmed again near where it was lost, and looking alike, is that person, not a new one."""
    stationary_hold_s: float = Field(default=30.0, ge=0.0, le=600.0)
    """A person standing still stays in view this long without a detection (the detector often loses
    someone who stands with their back turned); one who moves is held `max_gap_s` only."""


class CountingConfig(Section):
    """The counting line (normalised image coordinates) and the alert thresholds."""

    line: tuple[Point, Point] = ((0.0, 0.5), (1.0, 0.5))
    occupancy_max: int = Field(default=10, ge=1)
    occupancy_s: float = Field(default=10.0, ge=0.0)
    loitering_s: float = Field(default=60.0, gt=0.0)
    daily_reset: dt.time | None = None
    override_file: Path | None = None
    """The line placed on the dashboard, which wins over `line` (counting/line_override.py)."""

    @model_validator(mode="after")
    def _line_has_length(self) -> CountingConfig:
        if self.line[0] == self.line[1]:
            raise ValueError("line: the two points must differ")
        return self


class TlsConfig(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


def _topic_level(value: str) -> str:
    if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
        raise ValueError("must be a plain topic level without wildcards or edge slashes")
    return value


class HomeAssistantConfig(Section):
    """Home Assistant MQTT discovery: retained configs that make the figures entities (off: cleared)."""

    enabled: bool = True
    prefix: str = DEFAULT_DISCOVERY_PREFIX

    _topic_safe = field_validator("prefix")(_topic_level)


class MqttConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    compat_topics: bool = False
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    min_interval_s: float = Field(default=0.5, ge=0.0, le=60.0)
    heartbeat_s: float = Field(default=5.0, gt=0.0, le=5.0)
    max_queued: int = Field(default=1000, ge=10, le=100000)
    reconnect_max_s: float = Field(default=30.0, ge=1.0, le=600.0)
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()

    _topic_safe = field_validator("topic_prefix")(_topic_level)


class StoreConfig(Section):
    retention_days: int = Field(default=30, ge=1, le=3650)


class StreamConfig(Section):
    """The annotated frames handed to the encoder, and what they show."""

    enabled: bool = True
    socket_path: Path = Path("/run/people-counter/frames.sock")
    width: int = Field(default=768, ge=64, le=3840)
    fps: float = Field(default=10.0, gt=0.0, le=60.0)
    blur_people: bool = True
    # The encoder's settings (people-counter-stream reads this same file).
    jpeg_socket_path: Path = Path("/run/people-counter/mjpeg.sock")
    quality: int = Field(default=5, ge=2, le=31, description="MJPEG qscale: 2 best, 31 smallest")
    ffmpeg: Path | None = None


class Config(Section):
    device_id: str = Field(default_factory=socket.gethostname)
    state_dir: Path = Path("/var/lib/people-counter")
    input: InputConfig = InputConfig()
    model: ModelConfig = ModelConfig()
    tracker: TrackerConfig = TrackerConfig()
    counting: CountingConfig = CountingConfig()
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    stream: StreamConfig = StreamConfig()

    @field_validator("device_id")
    @classmethod
    def _device_id_is_topic_level(cls, value: str) -> str:
        if not value or any(c in value for c in "#+/ "):
            raise ValueError("must be non-empty with no '/', '#', '+' or spaces (it is an MQTT topic level)")
        return value


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first bad field and why it is bad."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    return f"{field}: {reason}"


SectionT = TypeVar("SectionT", bound=BaseModel)


def read_yaml(path: Path) -> object:
    """A config file's YAML document; a ConfigError naming the file (and the line) if it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        # A scanner or parser error names its problem; a reader error (a control character) its reason.
        problem = getattr(error, "problem", None) or getattr(error, "reason", None)
        raise ConfigError(f"{path}: invalid YAML{where}" + (f": {problem}" if problem else "")) from None


def validate_document(model: type[SectionT], data: object, origin: str) -> SectionT:
    """A YAML document as `model`; a ConfigError naming the first bad field if it does not fit."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{origin}: {describe_validation_error(error)}") from None


def parse_config(data: object, origin: str = "config") -> Config:
    return validate_document(Config, {} if data is None else data, origin)


def load_config(path: Path) -> Config:
    return parse_config(read_yaml(path), str(path))
