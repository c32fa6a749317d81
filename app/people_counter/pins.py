"""The appliance's pins (the ffmpeg build, the sample video, OpenVINO, the models), read from pins.yml.

pins.yml ships in the wheel, and the roles read the same file on the controller: its path is
what `python -c "import people_counter.pins as p; print(p.PINS_FILE)"` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PINS_FILE = Path(__file__).with_name("pins.yml")


@dataclass(frozen=True, slots=True)
class FfmpegPin:
    version: str
    """The static FFmpeg build's version, as `ffmpeg -version` names it."""
    wheel_version: str
    """The imageio-ffmpeg wheel that carries the build."""
    wheel_sha256: Mapping[str, str]
    """The wheel's sha256 for each architecture (x86_64, aarch64)."""
    device_path: Path
    """Where a device has the build (the ffmpeg role's link)."""


@dataclass(frozen=True, slots=True)
class SamplePin:
    package: str
    """The Debian package that carries the sample video."""
    member: str
    """The video's path inside the package."""
    sha256: str


@dataclass(frozen=True, slots=True)
class Pins:
    ffmpeg: FfmpegPin
    sample: SamplePin
    openvino_version: str
    models: Mapping[str, Mapping[str, Any]]
    """Each catalog model's pins, as prepare/model_catalog.py types them (ModelPins)."""


def load_pins(path: Path = PINS_FILE) -> Pins:
    import yaml  # only when the pins are read: printing PINS_FILE (the roles do) stays quick

    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    ffmpeg, sample = data["ffmpeg"], data["sample"]
    return Pins(
        ffmpeg=FfmpegPin(
            version=str(ffmpeg["version"]),
            wheel_version=str(ffmpeg["wheel_version"]),
            wheel_sha256={str(arch): str(sha) for arch, sha in ffmpeg["wheel_sha256"].items()},
            device_path=Path(ffmpeg["device_path"]),
        ),
        sample=SamplePin(package=str(sample["package"]), member=str(sample["member"]), sha256=str(sample["sha256"])),
        openvino_version=str(data["openvino"]["version"]),
        models=data["models"],
    )


@cache
def pins() -> Pins:
    """The pins of this package, read once."""
    return load_pins()
