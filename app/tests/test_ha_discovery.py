"""Home Assistant MQTT discovery, read from a real Mosquitto as Home Assistant would read it.

The real publisher sends the configs; a subscriber reads `homeassistant/#` as Home Assistant
does, checks what Home Assistant's MQTT sensor and binary_sensor require, and renders each
value_template with Jinja2 against the device's real retained state, the way Home Assistant
renders it (a sandboxed environment with `value` and `value_json`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion

from people_counter.config import MqttConfig
from people_counter.contract import AVAILABLE_OFFLINE, AVAILABLE_ONLINE
from people_counter.outputs.mqtt_publisher import MqttPublisher
from people_counter.stage_data import CounterState, PersonEvent
from testsupport.helpers import wait_until
from testsupport.mosquitto_broker import (
    MessageCollector,
    MosquittoBroker,
    ReceivedMessage,
    mosquitto_available,
    subscribe_collect,
)

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs /usr/sbin/mosquitto and mosquitto_passwd"),
]

DEVICE = "shop.entrance-1"
NODE = "shop_entrance-1"
"""The device's node_id in the discovery topics: Home Assistant takes only A-Z, a-z, 0-9, _ and -."""
SENSORS = {"count", "total", "in", "out", "avg_duration"}
BINARY_SENSORS = {"occupancy_alert", "loitering_alert"}
# Home Assistant's accepted values (homeassistant.components.sensor / binary_sensor).
STATE_CLASSES = {"measurement", "total", "total_increasing"}
DURATION_UNITS = {"d", "h", "min", "s", "ms"}


def make_state(occupancy_alert: bool = True, loitering_alert: bool = False) -> CounterState:
    return CounterState(
        count=2,
        total=5,
        in_count=3,
        out_count=1,
        avg_duration_s=12.5,
        fps=10.0,
        inference_ms=8.0,
        dropped_frames=0,
        input="ok",
        uptime_s=1.0,
        ts=time.time(),
        occupancy_alert=occupancy_alert,
        loitering_alert=loitering_alert,
    )


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text("counterpw\n", encoding="utf-8")
    return path


def publisher_for(broker: MosquittoBroker, password_file: Path, enabled: bool = True, **extra: object) -> MqttPublisher:
    cfg = MqttConfig.model_validate(
        {
            "host": broker.host,
            "port": broker.port,
            "username": "counter",
            "password_file": password_file,
            "min_interval_s": 0.0,
            "reconnect_max_s": 2.0,
            "homeassistant": {"enabled": enabled},
            **extra,
        }
    )
    return MqttPublisher(cfg, DEVICE)


def home_assistant(broker: MosquittoBroker, topics: list[str]) -> MessageCollector:
    return subscribe_collect(broker.host, broker.port, "ha", broker.users["ha"], topics)


def retained_before_marker(broker: MosquittoBroker, collector: MessageCollector) -> list[ReceivedMessage]:
    """What the broker held retained for a fresh subscription: everything before a live marker.

    Mosquitto sends a new subscriber the retained messages before anything published after the
    subscription, so once the marker is in, nothing retained is still to come."""
    marker = f"homeassistant/sensor/{NODE}/marker/config"
    writer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="marker")
    writer.username_pw_set("counter", broker.users["counter"])
    writer.connect(broker.host, broker.port)
    writer.loop_start()
    try:
        writer.publish(marker, "marker", qos=1).wait_for_publish(5)
        seen = collector.wait_for(lambda m: m.topic == marker)
    finally:
        writer.disconnect()
        writer.loop_stop()
    assert seen is not None, "the marker did not arrive"
    return collector.messages[: collector.messages.index(seen)]


def render(template: str, state_payload: bytes) -> str:
    """A value_template rendered as Home Assistant renders it for an MQTT entity."""
    environment = ImmutableSandboxedEnvironment()
    text = state_payload.decode("utf-8")
    return environment.from_string(template).render(value=text, value_json=json.loads(text)).strip()


def configs_by_object(
    messages: list[ReceivedMessage], retained: bool = True
) -> dict[tuple[str, str], dict[str, object]]:
    """The configs by (component, object_id); `retained`: as a new subscriber gets them."""
    found: dict[tuple[str, str], dict[str, object]] = {}
    for message in messages:
        prefix, component, node, object_id, last = message.topic.split("/")
        assert (prefix, node, last) == ("homeassistant", NODE, "config"), message.topic
        assert message.retain == retained, message.topic
        found[(component, object_id)] = json.loads(message.payload)
    return found


def test_discovery_configs_are_what_home_assistant_needs(password_file: Path) -> None:
    with MosquittoBroker() as broker:
        publisher = publisher_for(broker, password_file)
        publisher.start()
        assert wait_until(lambda: publisher.connected)
        publisher.publish_state(make_state(occupancy_alert=True, loitering_alert=False))
        assert wait_until(lambda: publisher.queued_messages == 0)

        with home_assistant(broker, ["homeassistant/#"]) as ha:
            configs = configs_by_object(retained_before_marker(broker, ha))
        assert set(configs) == {("sensor", name) for name in SENSORS} | {
            ("binary_sensor", name) for name in BINARY_SENSORS
        }

        state_topics = {config["state_topic"] for config in configs.values()}
        availability_topics = {config["availability_topic"] for config in configs.values()}
        assert len(state_topics) == len(availability_topics) == 1
        with home_assistant(broker, [*state_topics, *availability_topics]) as ha:
            state = ha.wait_for(lambda m: m.topic in state_topics)
            available = ha.wait_for(lambda m: m.topic in availability_topics)
        assert state is not None and state.retain
        assert available is not None and available.retain

        unique_ids = set()
        for (component, object_id), config in configs.items():
            unique_ids.add(config["unique_id"])
            assert config["name"]
            device = config["device"]
            assert isinstance(device, dict)
            assert device["identifiers"] == [f"people_counter_{DEVICE}"]
            assert {"name", "manufacturer", "model", "sw_version"} <= set(device)
            assert config["payload_available"] == AVAILABLE_ONLINE
            assert config["payload_not_available"] == AVAILABLE_OFFLINE
            assert available.text == config["payload_available"]
            shown = render(str(config["value_template"]), state.payload)
            if component == "sensor":
                assert config["state_class"] in STATE_CLASSES
                assert config["unit_of_measurement"]
                assert float(shown) == {"count": 2, "total": 5, "in": 3, "out": 1, "avg_duration": 12.5}[object_id]
            else:
                assert config.get("payload_on", "ON") == "ON" and config.get("payload_off", "OFF") == "OFF"
                assert shown == {"occupancy_alert": "ON", "loitering_alert": "OFF"}[object_id]
        assert len(unique_ids) == len(configs)
        # A daily reset takes the totals back to 0: only total_increasing treats that as a new cycle.
        assert {configs[("sensor", name)]["state_class"] for name in ("total", "in", "out")} == {"total_increasing"}
        assert configs[("sensor", "count")]["state_class"] == "measurement"
        duration = configs[("sensor", "avg_duration")]
        assert duration["device_class"] == "duration" and duration["unit_of_measurement"] in DURATION_UNITS
        publisher.stop(None)


def test_configs_come_back_after_a_broker_restart_without_persistence(password_file: Path) -> None:
    with MosquittoBroker() as broker:
        publisher = publisher_for(broker, password_file)
        publisher.start()
        assert wait_until(lambda: publisher.connected)
        broker.kill()
        assert wait_until(lambda: not publisher.connected)
        broker.start()
        assert wait_until(lambda: publisher.connections == 2, 10)
        assert wait_until(lambda: publisher.queued_messages == 0)
        with home_assistant(broker, ["homeassistant/#"]) as ha:
            assert len(configs_by_object(retained_before_marker(broker, ha))) == len(SENSORS | BINARY_SENSORS)
        publisher.stop(None)


def test_configs_wait_for_room_after_an_outage_instead_of_being_dropped(password_file: Path) -> None:
    """After an outage that filled paho's queue, the configs go once the backlog drained, all of them."""
    broker = MosquittoBroker()
    try:
        publisher = publisher_for(broker, password_file, max_queued=20)
        publisher.start()
        # 12 events fill the queue but its reserved slots; on reconnect `online` and the state
        # take two of those, which leaves 6 places for the 7 configs.
        for track_id in range(100):
            publisher.publish_event(PersonEvent("enter", track_id, float(track_id)))
        publisher.publish_state(make_state())
        dropped = publisher.dropped_messages
        broker.start()
        with home_assistant(broker, ["homeassistant/#"]) as ha:

            def configs_arrived() -> bool:
                publisher.publish_state(make_state())  # as the counting loop does, every frame
                return len(ha.messages) >= len(SENSORS | BINARY_SENSORS)

            assert wait_until(configs_arrived, 10)
            assert wait_until(lambda: publisher.queued_messages == 0)
            assert len(configs_by_object(list(ha.messages), retained=False)) == len(SENSORS | BINARY_SENSORS)
        assert publisher.dropped_messages == dropped
        publisher.stop(None)
    finally:
        broker.close()


def test_turning_discovery_off_clears_the_retained_configs(password_file: Path) -> None:
    with MosquittoBroker() as broker:
        first = publisher_for(broker, password_file)
        first.start()
        assert wait_until(lambda: first.connected)
        assert wait_until(lambda: first.queued_messages == 0)
        first.stop(None)
        with home_assistant(broker, ["homeassistant/#"]) as ha:
            assert len(retained_before_marker(broker, ha)) == len(SENSORS | BINARY_SENSORS)

            # Restarted with discovery off: every config topic gets an empty payload, which is how
            # Home Assistant is told to remove an entity, and the broker drops the retained config.
            second = publisher_for(broker, password_file, enabled=False)
            second.start()
            assert wait_until(lambda: second.connected)
            assert wait_until(lambda: sum(1 for m in ha.messages if m.payload == b"") == 7)
        second.stop(None)
        with home_assistant(broker, ["homeassistant/#"]) as late:
            assert retained_before_marker(broker, late) == []
