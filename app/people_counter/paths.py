"""Where downloads are cached and where prepared models live."""

from __future__ import annotations

import os
from pathlib import Path

from people_counter.prepare.model_catalog import DEFAULT_MODEL_NAME, ModelName

DEFAULT_CACHE_DIR = Path("/var/cache/people-counter")
SAMPLE_SOURCE = "sample"


def cache_dir() -> Path:
    """Downloads (model wheel, sample video) shared by every run on this machine."""
    return Path(os.environ.get("PEOPLE_COUNTER_CACHE", str(DEFAULT_CACHE_DIR)))


def sample_video_path() -> Path:
    return cache_dir() / "vtest.avi"


def model_dir(state_dir: Path, name: ModelName) -> Path:
    """One directory per catalog model: its IR and the source.json it was made from."""
    return state_dir / "models" / name


def model_xml(state_dir: Path, name: ModelName) -> Path:
    return model_dir(state_dir, name) / "model.xml"


def default_model_xml(state_dir: Path) -> Path:
    return model_xml(state_dir, DEFAULT_MODEL_NAME)


def database_path(state_dir: Path) -> Path:
    return state_dir / "counts.sqlite3"
