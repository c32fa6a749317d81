"""Shared fixtures: the real model and the real sample video (see conftest_model.py)."""

from conftest_model import default_model_xml, model_state_dir, nanodet_model_xml, sample_video

__all__ = ["default_model_xml", "model_state_dir", "nanodet_model_xml", "sample_video"]
