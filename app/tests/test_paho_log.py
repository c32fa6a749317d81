"""paho's line per reconnect attempt is debug: a counter with no broker keeps a quiet log."""

from __future__ import annotations

import logging

import pytest

from people_counter.outputs.paho_log import paho_logger


def test_reconnect_attempts_are_debug_and_other_errors_stay(caplog: pytest.LogCaptureFixture) -> None:
    logger = paho_logger("people_counter.mqtt.paho.test")
    caplog.set_level(logging.INFO, logger=logger.name)
    # As paho 2.2 logs it on each attempt while the broker is down.
    logger.error("Client is not connected. Socket: None). Last known Connection State: MQTT_CS_CONNECTING")
    logger.error("Caught exception in on_connect: boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "Caught exception in on_connect: boom")
    ]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger=logger.name)
    logger.error("Client is not connected. Socket: None)")
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert paho_logger(logger.name).filters == logger.filters and len(logger.filters) == 1
