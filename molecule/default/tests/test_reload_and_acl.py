"""A reload applies the new counting settings; a bridge user cannot write another device's topics.

Messages are read through MQTT sessions that outlive their client (a persistent session at QoS 1,
subscribed before the message can be sent): the broker queues what arrives, so nothing depends on
a subscriber being connected at the right moment.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import yaml
from conftest import (
    COUNTER,
    DEVICE_NAMES,
    FLEET_READER,
    MOSQUITTO,
    STREAM,
    WEB_USER,
    Browser,
    Node,
    node,
    wait_for,
)
from people_counter.outputs.annotate import LINE_COLOUR

CONFIG = "/etc/people-counter/config.yml"
# inventory/group_vars/devices.yml: counting.line [[0.0, 0.5], [1.0, 0.5]]
ORIGINAL_LINE_Y = 0.5
MOVED_LINE_Y = 0.25


class Session:
    """A persistent MQTT session (QoS 1) on one node's broker: subscribed once, read any number of
    times; the broker keeps what arrives in between. Ended by a clean connection with its id."""

    def __init__(self, on: Node, topic: str, user: str, client_id: str) -> None:
        self.on, self.topic, self.user, self.client_id = on, topic, user, client_id
        self.read(wait_s=1)  # creates the session and its subscription

    def read(self, wait_s: float = 3, count: int = 20) -> list[str]:
        result = self.on.mqtt_sub(
            self.topic,
            self.user,
            self.on.mqtt_password(self.user),
            count=count,
            wait_s=wait_s,
            client_id=self.client_id,
            persistent=True,
            qos=1,
        )
        return [line for line in result.stdout.splitlines() if line.strip()]

    def end(self) -> None:
        self.on.mqtt_sub(
            self.topic,
            self.user,
            self.on.mqtt_password(self.user),
            wait_s=1,
            client_id=self.client_id,
        )


# A reload (SIGHUP) applies the counting section.


def _write_file(device: Node, path: str, text: str) -> None:
    """Replace a file's content in place (its owner, group and mode stay)."""
    encoded = base64.b64encode(text.encode()).decode()
    device.check(f"printf %s {encoded} | base64 -d > {shlex.quote(path)}")


def _line_share(frame: np.ndarray, y_fraction: float) -> float:
    """The share of columns with the counting line's colour within 2 px of a height."""
    y = round(y_fraction * frame.shape[0])
    band = frame[max(0, y - 2) : y + 3].astype(np.int16)
    close = np.all(np.abs(band - np.array(LINE_COLOUR, dtype=np.int16)) <= 50, axis=2)
    return float(np.mean(np.any(close, axis=0)))


def _line_at(browser: Browser, y_fraction: float, not_at: float) -> bool:
    """One JPEG of the dashboard's video shows the line at y_fraction of its height, not at not_at."""
    _, data = browser.first_bytes("/video.mjpg", 400_000)
    start = data.find(b"\xff\xd8")
    end = data.find(b"\xff\xd9", start)
    assert 0 <= start < end, (
        f"no complete JPEG in the first {len(data)} bytes of the video"
    )
    frame = cv2.imdecode(
        np.frombuffer(data[start : end + 2], np.uint8), cv2.IMREAD_COLOR
    )
    assert frame is not None, "the video's JPEG does not decode"
    return _line_share(frame, y_fraction) > 0.6 and _line_share(frame, not_at) < 0.3


@pytest.fixture
def reloaded() -> Iterator[tuple[Node, Browser, Session]]:
    """The first device with its line moved to a quarter of the height and occupancy alerts from
    2 people on, reloaded; a logged-in dashboard client; a session subscribed to its alerts before
    the reload. Afterwards the original file is put back, reloaded, and the line seen back."""
    device = node(DEVICE_NAMES[0])
    browser = device.browser()
    status, page = browser.login(device.secret("dashboard-password"))
    assert status == 200, page[:300]
    # The premise: the video shows the inventory's line, and this test can see it.
    assert _line_at(browser, ORIGINAL_LINE_Y, MOVED_LINE_Y)
    original = device.check(f"cat {CONFIG}")
    config = yaml.safe_load(original)
    config["counting"].update(
        line=[[0.0, MOVED_LINE_Y], [1.0, MOVED_LINE_Y]],
        occupancy_max=1,
        occupancy_s=0.0,
    )
    alerts = Session(
        device, f"people_counter/{device.name}/alert", WEB_USER, "test-reload-alerts"
    )
    _write_file(device, CONFIG, yaml.safe_dump(config, sort_keys=True))
    try:
        device.check(f"systemctl reload {COUNTER}")
        yield device, browser, alerts
    finally:
        _write_file(device, CONFIG, original)
        device.check(f"systemctl reload {COUNTER}")
        alerts.end()
        wait_for(
            "the line back in place after the restore",
            lambda: _line_at(browser, ORIGINAL_LINE_Y, MOVED_LINE_Y),
            60,
        )


@pytest.mark.units(COUNTER, STREAM, MOSQUITTO)
def test_reload_applies_the_new_line_and_occupancy_threshold(
    reloaded: tuple[Node, Browser, Session],
) -> None:
    device, browser, alerts = reloaded
    pid = device.main_pid(COUNTER)
    # The video's overlay draws the line the counter counts on: from half to a quarter height.
    wait_for(
        f"the line at {MOVED_LINE_Y} of the height in {device.name}'s video",
        lambda: _line_at(browser, MOVED_LINE_Y, ORIGINAL_LINE_Y),
        60,
    )

    # The inventory's occupancy_max is 10: an alert with threshold 1 comes from the new config only.
    def occupancy_alert() -> dict[str, object] | None:
        for line in alerts.read():
            alert = json.loads(line)
            if alert["type"] == "occupancy" and alert["threshold"] == 1:
                return dict(alert)
        return None

    alert = wait_for(
        "an occupancy alert at the reloaded threshold 1", occupancy_alert, 120
    )
    assert float(str(alert["value"])) >= 2
    assert device.main_pid(COUNTER) == pid, "the reload restarted the counter"


# The central broker's ACL: each device's bridge user writes that device's topics only.


@pytest.mark.units(MOSQUITTO)
def test_bridge_user_is_refused_on_another_devices_prefix(
    devices: list[Node], central: Node
) -> None:
    if len(devices) < 2:
        pytest.skip("needs two devices")
    own, other = devices
    bridge_user, bridge_password = f"bridge-{own.name}", own.mqtt_password("bridge")
    probes = Session(
        central, "people_counter/+/acl-probe", FLEET_READER, "test-acl-probe"
    )
    try:
        # The bridge's credentials reach a reader on the device's own prefix...
        allowed = central.mqtt_pub(
            f"people_counter/{own.name}/acl-probe", "own", bridge_user, bridge_password
        )
        assert "not authori" not in allowed.stderr.lower(), allowed.stderr
        # ...and are refused on the other device's (MQTT v5 at QoS 1: the broker's PUBACK says so).
        refused = central.mqtt_pub(
            f"people_counter/{other.name}/acl-probe",
            "forged",
            bridge_user,
            bridge_password,
        )
        assert "not authori" in (refused.stderr + refused.stdout).lower(), (
            f"{bridge_user} wrote {other.name}'s prefix"
        )
        # Both were sent before this read, in order: the reader got the first and not the second.
        assert probes.read() == ["own"]
    finally:
        probes.end()
