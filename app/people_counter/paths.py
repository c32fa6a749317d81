"""Where downloads are cached and where prepared models live."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CACHE_DIR = Path("/var/cache/people-counter")
SAMPLE_SOURCE = "sample"


def cache_dir() -> Path:
    """Downloads (model wheel, sample video) shared by every run on this machine."""
    return Path(os.environ.get("PEOPLE_COUNTER_CACHE", str(DEFAULT_CACHE_DIR)))


def sample_video_path() -> Path:
    return cache_dir() / "vtest.avi"


def default_model_dir(state_dir: Path) -> Path:
    return state_dir / "models" / "ssdlite"


def default_model_xml(state_dir: Path) -> Path:
    return default_model_dir(state_dir) / "model.xml"


def database_path(state_dir: Path) -> Path:
    return state_dir / "counts.sqlite3"
