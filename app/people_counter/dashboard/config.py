"""The dashboard's own config file (default /etc/people-counter/dashboard.yml), one typed model.

It is separate from the counter's config because its secrets (the password hash, the
MQTT password) must be readable by the dashboard's service user alone. Example, with
the defaults of everything but the password hash:

    listen: {host: 0.0.0.0, port: 8080, redirect_http_port: null}   # e.g. 80: plain HTTP that redirects to HTTPS
    auth:
      password_hash: "scrypt$16384$8$1$<salt b64>$<key b64>"   # people-counter-dashboard hash-password
      # or password_hash_file: /run/credentials/people-counter-dashboard.service/password-hash
      session_secret_file: /var/lib/people-counter-dashboard/session.key   # created 0600 if missing
      session_max_age_s: 43200
    tls: {cert_file: /etc/people-counter/tls/cert.pem, key_file: /etc/people-counter/tls/key.pem}  # optional
    mqtt:
      host: 127.0.0.1
      port: 1883
      username: people-counter-web
      password_file: /run/credentials/people-counter-dashboard.service/mqtt-password
      ca_file: null            # set for TLS to the broker
      topic_prefix: people_counter
      device_id: <host name>   # must match the counter's device_id
    metrics: {token_file: null}   # a file holding a bearer token that /metrics then requires
    database: /var/lib/people-counter/counts.sqlite3   # the counter's SQLite, read-only
    jpeg_socket: /run/people-counter/mjpeg.sock         # people-counter-stream's output
    stale_after_s: 10
    max_viewers: 20
    input_down_after_s: 10     # /healthz is 503 once the counter's input has been down this long
    limits:                    # against hostile clients
      request_head_timeout_s: 10   # the TLS handshake and a whole request head, or the connection is closed
      body_timeout_s: 10           # the login form's body
      idle_timeout_s: 60           # a kept-alive connection with no request
      write_timeout_s: 10          # a video or SSE viewer that reads nothing this long loses its place
      max_connections: 512
      max_connections_per_address: 32
      max_message_bytes: 65536     # a bigger MQTT message is ignored
    line_editor:               # optional: the counting line placed on the live view
      override_file: /var/lib/people-counter/line/counting-line.yml   # the counter's counting.override_file
      counter_config: /etc/people-counter/config.yml                  # its line is shown until one is saved
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from people_counter.config import DEFAULT_CONFIG_PATH, read_yaml, validate_document
from people_counter.contract import DEFAULT_TOPIC_PREFIX
from people_counter.dashboard.passwords import check_hash_format
from people_counter.errors import ConfigError

DEFAULT_DASHBOARD_CONFIG = Path("/etc/people-counter/dashboard.yml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(Section):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    redirect_http_port: int | None = Field(default=None, ge=1, le=65535)
    """A plain-HTTP port that only redirects to the HTTPS one (needs tls)."""


class AuthConfig(Section):
    """The login. Exactly one of password_hash and password_hash_file (for LoadCredential=)."""

    password_hash: str | None = None
    password_hash_file: Path | None = None
    session_secret_file: Path = Path("/var/lib/people-counter-dashboard/session.key")
    session_max_age_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400)

    @model_validator(mode="after")
    def _one_hash(self) -> AuthConfig:
        if (self.password_hash is None) == (self.password_hash_file is None):
            raise ValueError("set exactly one of password_hash and password_hash_file")
        return self


class TlsConfig(Section):
    """HTTPS when both are set; the session cookie is then marked Secure."""

    cert_file: Path
    key_file: Path


class MetricsConfig(Section):
    """/metrics: open to all, or only to `Authorization: Bearer <the token in token_file>`."""

    token_file: Path | None = None


class LimitsConfig(Section):
    """Bounds on what one client can hold (see guard.py); their figures are the unit's LimitNOFILE's."""

    request_head_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=10.0, gt=0, le=300)
    idle_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    write_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_connections: int = Field(default=512, ge=1, le=100_000)
    max_connections_per_address: int = Field(default=32, ge=1, le=100_000)
    max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)


class DashboardMqttConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    device_id: str = Field(default_factory=socket.gethostname)

    @field_validator("topic_prefix", "device_id")
    @classmethod
    def _topic_level(cls, value: str) -> str:
        if not value or any(c in value for c in "#+/ "):
            raise ValueError("must be one MQTT topic level: no '/', '#', '+' or spaces")
        return value


class LineEditorConfig(Section):
    """The counting line drawn on the live image: written to `override_file`, which must be the
    counter's counting.override_file; until then the line shown is `counter_config`'s."""

    override_file: Path = Path("/var/lib/people-counter/line/counting-line.yml")
    counter_config: Path = DEFAULT_CONFIG_PATH


class DashboardConfig(Section):
    listen: ListenConfig = ListenConfig()
    auth: AuthConfig
    tls: TlsConfig | None = None
    mqtt: DashboardMqttConfig = DashboardMqttConfig()
    metrics: MetricsConfig = MetricsConfig()
    database: Path = Path("/var/lib/people-counter/counts.sqlite3")
    """The counter's SQLite, opened read-only."""
    jpeg_socket: Path = Path("/run/people-counter/mjpeg.sock")
    """Where people-counter-stream serves the encoded JPEGs."""
    stale_after_s: float = Field(default=10.0, gt=0, le=300)
    max_viewers: int = Field(default=20, ge=1, le=500)
    """Open video streams at once; more get 503 (each costs a socket and a little CPU)."""
    input_down_after_s: float = Field(default=10.0, gt=0, le=3600)
    limits: LimitsConfig = LimitsConfig()
    line_editor: LineEditorConfig | None = None
    """None: the counting line is set in the counter's config only."""

    @model_validator(mode="after")
    def _redirect_needs_tls(self) -> DashboardConfig:
        if self.listen.redirect_http_port is not None:
            if self.tls is None:
                raise ValueError("listen.redirect_http_port needs tls: it redirects to HTTPS")
            if self.listen.redirect_http_port == self.listen.port:
                raise ValueError("listen.redirect_http_port must differ from listen.port")
        return self


def load_dashboard_config(path: Path) -> DashboardConfig:
    return validate_document(DashboardConfig, read_yaml(path), str(path))


def read_password_hash(cfg: DashboardConfig) -> str:
    if cfg.auth.password_hash is not None:
        value = cfg.auth.password_hash
    else:
        assert cfg.auth.password_hash_file is not None
        try:
            value = cfg.auth.password_hash_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"auth.password_hash_file: cannot read: {error.strerror}") from None
    try:
        check_hash_format(value)
    except ValueError as error:
        raise ConfigError(f"auth: {error}") from None
    return value
