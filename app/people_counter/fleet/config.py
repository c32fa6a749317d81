"""The fleet page's config file (default /etc/people-counter/fleet.yml), one typed model.

The listening socket, the login, TLS and the limits against hostile clients are the dashboard's
own sections (dashboard/config.py), so both pages are set up alike. Example, with the defaults
of everything but the password hash:

    listen: {host: 0.0.0.0, port: 9443, redirect_http_port: null}
    auth:
      password_hash: "scrypt$..."        # people-counter-dashboard hash-password; or password_hash_file
      session_secret_file: /var/lib/people-counter-fleet/session.key
      session_max_age_s: 43200
    tls: {cert_file: /etc/people-counter/tls/fleet.crt, key_file: /etc/people-counter/tls/fleet.key}
    mqtt:
      host: 127.0.0.1
      port: 1883
      username: people-counter-fleet     # a user that may read <topic_prefix>/#
      password_file: /run/credentials/people-counter-fleet.service/mqtt-password
      ca_file: null
      topic_prefix: people_counter
    database: /var/lib/people-counter-fleet/fleet.sqlite3
    retention_days: 90
    stale_after_s: 15          # a device "online" that has sent nothing this long shows as silent
    push_interval_s: 0.25      # how often browsers get what changed
    flush_interval_s: 5        # how often history goes to SQLite
    max_devices: 20000         # more device ids than this are ignored (a topic flood)
    limits: {...}              # the dashboard's limits section
"""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from people_counter.config import read_yaml, validate_document
from people_counter.contract import DEFAULT_TOPIC_PREFIX
from people_counter.dashboard.config import AuthConfig, LimitsConfig, ListenConfig, Section, TlsConfig

DEFAULT_FLEET_CONFIG = Path("/etc/people-counter/fleet.yml")


class FleetMqttConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    client_id: str = Field(default_factory=lambda: f"people-counter-fleet-{uuid.uuid4().hex[:8]}")

    @field_validator("topic_prefix")
    @classmethod
    def _one_level(cls, value: str) -> str:
        if not value or any(c in value for c in "#+/ "):
            raise ValueError("must be one MQTT topic level: no '/', '#', '+' or spaces")
        return value


class FleetConfig(Section):
    listen: ListenConfig = ListenConfig(port=9443)
    auth: AuthConfig
    tls: TlsConfig | None = None
    mqtt: FleetMqttConfig = FleetMqttConfig()
    database: Path = Path("/var/lib/people-counter-fleet/fleet.sqlite3")
    retention_days: int = Field(default=90, ge=1, le=3650)
    stale_after_s: float = Field(default=15.0, gt=0, le=3600)
    push_interval_s: float = Field(default=0.25, ge=0.05, le=10)
    flush_interval_s: float = Field(default=5.0, ge=0.1, le=300)
    max_devices: int = Field(default=20_000, ge=1, le=1_000_000)
    limits: LimitsConfig = LimitsConfig()

    @model_validator(mode="after")
    def _redirect_needs_tls(self) -> FleetConfig:
        if self.listen.redirect_http_port is not None and self.tls is None:
            raise ValueError("listen.redirect_http_port needs tls: it redirects to HTTPS")
        return self


def load_fleet_config(path: Path) -> FleetConfig:
    return validate_document(FleetConfig, read_yaml(path), str(path))
