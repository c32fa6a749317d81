"""The files a counter config names, checked where the counter runs (`check-config --files`).

The config alone is checked anywhere (on the controller too); the files only make sense on the
device, as the service's user: a missing one would otherwise show only when the service starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from people_counter.config import Config
from people_counter.errors import ConfigError, InputError
from people_counter.paths import model_xml
from people_counter.vision.source import parse_input


def _readable_file(key: str, path: Path) -> None:
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{key}: {path} is not readable")


SYSTEMD_CREDENTIALS = Path("/run/credentials")
"""A unit's credentials appear here only while it runs; systemd itself refuses to start a unit
whose credential source is missing, with a line naming it."""


def _loaded_by_systemd(path: Path) -> bool:
    """A credential of a unit that is not the one running this check: checked by systemd at start."""
    return path.is_relative_to(SYSTEMD_CREDENTIALS) and "CREDENTIALS_DIRECTORY" not in os.environ


def check_named_files(config: Config) -> None:
    """A ConfigError naming the key and the path of the first file that is missing or unreadable:
    a local input file (or the sample video), the model (model.path, or the catalog model's IR
    under state_dir), the camera's credentials, the MQTT password and TLS files."""
    try:
        parse_input(config.input.source)  # a camera index or a URL names no file
    except InputError as error:
        raise ConfigError(f"input.source: {error}") from None
    named = {
        "input.credentials_file": config.input.credentials_file,
        "model.path": config.model.path,
        "model.name": model_xml(config.state_dir, config.model.name) if config.model.path is None else None,
        "mqtt.password_file": config.mqtt.password_file,
    }
    tls = config.mqtt.tls
    if tls is not None:
        named |= {
            "mqtt.tls.ca_file": tls.ca_file,
            "mqtt.tls.cert_file": tls.cert_file,
            "mqtt.tls.key_file": tls.key_file,
        }
    for key, path in named.items():
        if path is not None and not _loaded_by_systemd(path):
            _readable_file(key, path)
