"""The model catalog and `model.name`: every offered name has an entry, its own directory and
its own measured score threshold, unless the config sets one."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from people_counter import paths
from people_counter.config import ModelConfig, parse_config
from people_counter.errors import ConfigError
from people_counter.prepare.model_catalog import CATALOG, DEFAULT_MODEL_NAME, ModelName


def test_every_offered_name_is_in_the_catalog_with_pinned_members() -> None:
    assert set(get_args(ModelName)) == set(CATALOG)
    for name, model in CATALOG.items():
        assert model.name == name
        assert model.graph_member in model.pins["members"]
        assert all(len(sha256) == 64 for sha256 in [model.pins["archive_sha256"], *model.pins["members"].values()])


def test_the_score_threshold_defaults_to_the_models_own() -> None:
    assert ModelConfig().name == DEFAULT_MODEL_NAME
    assert ModelConfig().min_score == CATALOG[DEFAULT_MODEL_NAME].score_threshold
    assert ModelConfig(name="ssdlite").min_score == 0.3
    assert ModelConfig(name="nanodet").min_score == 0.5
    assert ModelConfig(name="nanodet", score_threshold=0.25).min_score == 0.25
    assert parse_config({"model": {"name": "nanodet"}}).model.min_score == 0.5


def test_an_unknown_name_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model\.name: Input should be 'ssdlite' or 'nanodet'"):
        parse_config({"model": {"name": "yolo"}})


def test_each_model_has_its_own_directory() -> None:
    state = Path("/var/lib/people-counter")
    assert paths.model_xml(state, "nanodet") == state / "models" / "nanodet" / "model.xml"
    assert paths.default_model_xml(state) == paths.model_xml(state, DEFAULT_MODEL_NAME)
