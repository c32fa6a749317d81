"""The original 2019 UI's view of a device, through what the mosquitto role makes of one switch.

The role renders its users, passwords, ACL and listeners for `mosquitto_compat_ui: true`; a real
Mosquitto runs with that ACL and those passwords plus a WebSockets listener; the real publisher
counts; and a paho client over WebSockets, logged in as the UI's user, subscribes to `#` as the
UI could. It gets the retained `person` at once, then `person` and `person/duration`, and
nothing else, and what it publishes goes nowhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from people_counter.config import MqttConfig
from people_counter.contract import COMPAT_COUNT_TOPIC, COMPAT_DURATION_TOPIC, COMPAT_TOPICS
from people_counter.outputs.mqtt_publisher import MqttPublisher
from people_counter.stage_data import Alert, CounterState, PersonEvent
from testsupport.helpers import wait_until
from testsupport.mosquitto_broker import MessageCollector, MosquittoBroker, mosquitto_available, subscribe_collect
from testsupport.mosquitto_role import (
    MOSQUITTO_ROLE,
    acl_rules,
    ansible_playbook,
    render_role_templates,
)

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs /usr/sbin/mosquitto and mosquitto_passwd"),
    pytest.mark.skipif(not MOSQUITTO_ROLE.is_dir() or ansible_playbook() is None, reason="needs the role and Ansible"),
]

DEVICE = "dev1"
UI_USER = "people-counter-ui"
TEMPLATES = ("people-counter.acl.j2", "people-counter.passwd.j2", "people-counter.conf.j2")
EXTRA_USER = {"name": "reader", "acl": [{"access": "read", "topic": "people_counter/#"}]}


@dataclass(frozen=True)
class RenderedRole:
    acl: str
    passwd: str
    conf: str
    passwords: dict[str, str]
    """The passwords the role generated on the controller, by user."""


@pytest.fixture(scope="module")
def role(tmp_path_factory: pytest.TempPathFactory) -> RenderedRole:
    workdir = tmp_path_factory.mktemp("role")
    credentials = workdir / "credentials"
    host_vars = {
        "mosquitto_compat_ui": True,
        "mosquitto_credentials_dir": str(credentials),
        "mosquitto_extra_users": [EXTRA_USER],
    }
    rendered = render_role_templates(TEMPLATES, host_vars, workdir, host=DEVICE)
    passwords = {
        path.name.removeprefix("mqtt-"): path.read_text(encoding="utf-8").split()[0]
        for path in (credentials / DEVICE).glob("mqtt-*")
    }
    return RenderedRole(*(rendered[name] for name in TEMPLATES), passwords=passwords)


@pytest.fixture
def broker(role: RenderedRole) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(users=role.passwords, websockets=True, acl_text=role.acl) as running:
        yield running


def make_state(count: int, total: int) -> CounterState:
    return CounterState(count, total, total, 0, 4.5, 10.0, 8.0, 0, "ok", 1.0, time.time())


def start_counter(broker: MosquittoBroker, role: RenderedRole, tmp_path: Path) -> MqttPublisher:
    password_file = tmp_path / "counter-password"
    password_file.write_text(role.passwords["people-counter"], encoding="utf-8")
    cfg = MqttConfig(
        host=broker.host,
        port=broker.port,
        username="people-counter",
        password_file=password_file,
        compat_topics=True,
        min_interval_s=0.0,
    )
    publisher = MqttPublisher(cfg, DEVICE)
    publisher.start()
    assert wait_until(lambda: publisher.connected)
    return publisher


class WebSocketsUi(MessageCollector):
    """The original UI's connection: MQTT over WebSockets as its read-only user."""

    def __init__(self, broker: MosquittoBroker, password: str, topics: list[str]) -> None:
        assert broker.ws_port is not None
        super().__init__(broker.host, broker.ws_port, UI_USER, password, topics, transport="websockets")

    def publish(self, topic: str, text: str) -> None:
        """Publish as the UI (retained, QoS 1) and wait for the broker's acknowledgement."""
        self._client.publish(topic, text, qos=1, retain=True).wait_for_publish(5)


def test_one_switch_gives_the_ui_a_websockets_listener_and_a_read_only_user(role: RenderedRole) -> None:
    lines = [line.strip() for line in role.conf.splitlines()]
    listener = lines.index("listener 9001 127.0.0.1")
    assert lines[listener + 1] == "protocol websockets"
    hashed = [line.split(":")[0] for line in role.passwd.splitlines() if ":$7$" in line]
    assert hashed == ["people-counter", "people-counter-web", "reader", UI_USER]
    rules = acl_rules(role.acl)
    # The role's own users stay; the extra one and the UI's are added to them.
    users = [rule[1] for rule in rules if rule[0] == "user"]
    assert users == ["people-counter", "people-counter-web", "reader", UI_USER]
    assert rules[rules.index(["user", "reader"]) + 1] == ["topic", "read", "people_counter/#"]
    ui_rules = rules[rules.index(["user", UI_USER]) + 1 :]
    assert ui_rules == [["topic", "read", topic] for topic in COMPAT_TOPICS]
    # The counter may write the compat topics too: the same switch turns them on.
    counter_rules = rules[rules.index(["user", "people-counter"]) + 1 : rules.index(["user", "people-counter-web"])]
    assert all(["topic", "write", topic] in counter_rules for topic in COMPAT_TOPICS)


def test_the_ui_over_websockets_gets_person_and_person_duration_and_nothing_else(
    broker: MosquittoBroker, role: RenderedRole, tmp_path: Path
) -> None:
    publisher = start_counter(broker, role, tmp_path)
    # Figures before the UI opens; then a quiet scene: nothing changes.
    publisher.publish_state(make_state(count=2, total=3))
    assert wait_until(lambda: publisher.queued_messages == 0)

    with WebSocketsUi(broker, role.passwords[UI_USER], ["#"]) as ui:
        opened = ui.wait_for(lambda m: m.topic == COMPAT_COUNT_TOPIC)
        assert opened is not None and opened.retain, "a UI opened in a quiet scene shows nothing"
        assert json.loads(opened.payload) == {"count": 2, "total": 3}

        # Everything the counter speaks: its own topics, Home Assistant's, and the compat ones.
        publisher.publish_alert(Alert("occupancy", 3, 2, time.time()))
        publisher.publish_event(PersonEvent("enter", 9, time.time()))
        publisher.publish_event(PersonEvent("exit", 9, time.time(), duration_s=4.25))
        publisher.publish_state(make_state(count=1, total=4))
        # The counter's messages reach subscribers in the order it sent them: this one is the last.
        last = ui.wait_for(lambda m: m.topic == COMPAT_COUNT_TOPIC and json.loads(m.payload)["count"] == 1)
        assert last is not None
        assert [(m.topic, json.loads(m.payload)) for m in ui.messages] == [
            (COMPAT_COUNT_TOPIC, {"count": 2, "total": 3}),
            (COMPAT_DURATION_TOPIC, {"duration": 4.25}),
            (COMPAT_COUNT_TOPIC, {"count": 1, "total": 4}),
        ]

        # The UI's user may not write: its retained publish is dropped, the counter's stays.
        ui.publish(COMPAT_COUNT_TOPIC, json.dumps({"count": 99, "total": 99}))
    with subscribe_collect(
        broker.host, broker.port, "people-counter-web", role.passwords["people-counter-web"], [COMPAT_COUNT_TOPIC]
    ) as reader:
        retained = reader.wait_for(lambda m: m.topic == COMPAT_COUNT_TOPIC)
        assert retained is not None and json.loads(retained.payload) == {"count": 1, "total": 4}
    publisher.stop(None)
