"""Fixtures for the tests (the real model and sample video live in conftest_model)."""

from conftest_model import default_model_xml, model_state_dir, nanodet_model_xml, sample_video, ssdlite_model_xml

__all__ = ["default_model_xml", "model_state_dir", "nanodet_model_xml", "sample_video", "ssdlite_model_xml"]
