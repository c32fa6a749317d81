"""The contract is the one home of the MQTT topics and payloads; the mosquitto role's ACL derives from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from people_counter import contract
from people_counter.config import HomeAssistantConfig
from people_counter.contract import (
    COMPAT_TOPICS,
    DEFAULT_DISCOVERY_PREFIX,
    DEFAULT_TOPIC_PREFIX,
    TOPICS_FILE,
    DeviceTopics,
    alert_message,
    event_message,
    state_message,
)
from people_counter.outputs.ha_discovery import discovery_messages
from people_counter.stage_data import Alert, CounterState, PersonEvent
from testsupport.mosquitto_role import MOSQUITTO_ROLE, acl_rules, ansible_playbook, render_role_templates

PACKAGE = Path(contract.__file__).resolve().parent


def _state() -> CounterState:
    return CounterState(
        count=2,
        total=7,
        in_count=3,
        out_count=1,
        avg_duration_s=12.3456,
        fps=9.876,
        inference_ms=8.04,
        dropped_frames=0,
        input="ok",
        uptime_s=61.239,
        ts=1700000000.12345,
        store="degraded",
        input_down_s=12.345,
        input_stream="sub",
        extra={"privacy_blur": True},
        occupancy_alert=True,
    )


def test_device_topics_are_under_prefix_and_device() -> None:
    topics = DeviceTopics("people_counter", "cam-1")
    assert (topics.state, topics.event, topics.alert, topics.available) == (
        "people_counter/cam-1/state",
        "people_counter/cam-1/event",
        "people_counter/cam-1/alert",
        "people_counter/cam-1/available",
    )
    assert topics.by_topic()["people_counter/cam-1/alert"] == "alert"
    assert DEFAULT_TOPIC_PREFIX == "people_counter"
    assert COMPAT_TOPICS == ("person", "person/duration")


def test_payloads_have_the_documented_shape() -> None:
    state = state_message(_state())
    assert state == {
        "count": 2,
        "total": 7,
        "in": 3,
        "out": 1,
        "avg_duration_s": 12.35,
        "fps": 9.88,
        "inference_ms": 8.04,
        "dropped_frames": 0,
        "input": "ok",
        "uptime_s": 61.24,
        "ts": 1700000000.123,
        "store": "degraded",
        "input_down_s": 12.3,
        "input_stream": "sub",
        "occupancy_alert": True,
        "loitering_alert": False,
        "privacy_blur": True,
    }
    assert set(contract.StateMessage.__annotations__) == set(state) - {"privacy_blur"}
    assert event_message(PersonEvent("exit", 4, 10.00049, 3.14159)) == {
        "type": "exit",
        "track_id": 4,
        "ts": 10.0,
        "duration_s": 3.14,
    }
    assert alert_message(Alert("occupancy", 12, 10, 5.0)) == {
        "type": "occupancy",
        "value": 12.0,
        "threshold": 10.0,
        "ts": 5.0,
    }
    assert json.loads(contract.payload(state)) == state


def _topic_literals() -> list[str]:
    """What would be a topic written outside the contract, as it would appear in Python source."""
    names = yaml.safe_load(TOPICS_FILE.read_text(encoding="utf-8"))["device"].values()
    patterns = [rf"}}/{re.escape(name)}[\"']" for name in names]  # f"{base}/state"
    patterns += [rf"[\"']{re.escape(topic)}[\"']" for topic in COMPAT_TOPICS]
    patterns.append(rf"[\"']{re.escape(DEFAULT_TOPIC_PREFIX)}[/\"']")
    return patterns


def test_no_topic_is_written_outside_the_contract() -> None:
    patterns = re.compile("|".join(_topic_literals()))
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "contract.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if patterns.search(line)
    ]
    assert found == [], "topics belong in people_counter/contract.py (mqtt_topics.yml)"


@pytest.mark.skipif(not MOSQUITTO_ROLE.is_dir(), reason="not in the repository")
def test_the_mosquitto_role_writes_no_topic_of_its_own() -> None:
    literals = [*COMPAT_TOPICS, f"{DEFAULT_TOPIC_PREFIX}/"]
    found = [
        f"{path.relative_to(MOSQUITTO_ROLE)}: {literal}"
        for path in sorted(MOSQUITTO_ROLE.rglob("*"))
        if path.is_file()
        for literal in literals
        if literal in path.read_text(encoding="utf-8")
    ]
    assert found == [], "the mosquitto role must take its topics from mosquitto_topics_file"


@pytest.mark.skipif(not MOSQUITTO_ROLE.is_dir(), reason="not in the repository")
def test_the_mosquitto_role_finds_the_contracts_topics_file() -> None:
    """The default of mosquitto_topics_file runs this Python code; it must name the contract's file."""
    default = yaml.safe_load((MOSQUITTO_ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    code = re.search(r"-c \"([^\"]+)\"", default["mosquitto_topics_file"])
    assert code is not None
    done = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, check=True)
    assert Path(done.stdout.strip()) == TOPICS_FILE


@pytest.mark.skipif(not MOSQUITTO_ROLE.is_dir(), reason="not in the repository")
def test_the_mosquitto_acl_grants_the_contracts_topics(tmp_path: Path) -> None:
    if ansible_playbook() is None:
        pytest.skip("ansible-playbook is not installed")
    host_vars = {"mosquitto_compat_topics": True, "mosquitto_bridge_clients": ["dev.2"]}
    acl = render_role_templates(["people-counter.acl.j2"], host_vars, tmp_path, host="dev.1")
    rules = acl_rules(acl["people-counter.acl.j2"])
    # A node_id takes no '.': Home Assistant's rule, which the contract and the role both apply.
    assert rules == [
        ["user", "people-counter"],
        ["topic", "write", f"{DEFAULT_TOPIC_PREFIX}/dev.1/#"],
        ["topic", "readwrite", f"{DEFAULT_DISCOVERY_PREFIX}/+/dev_1/+/config"],
        *[["topic", "write", topic] for topic in COMPAT_TOPICS],
        ["user", "people-counter-web"],
        ["topic", "read", f"{DEFAULT_TOPIC_PREFIX}/#"],
        *[["topic", "read", topic] for topic in COMPAT_TOPICS],
        ["user", "bridge-dev.2"],
        ["topic", "readwrite", f"{DEFAULT_TOPIC_PREFIX}/dev.2/#"],
        ["topic", "readwrite", f"{DEFAULT_DISCOVERY_PREFIX}/+/dev_2/+/config"],
    ]
    for device, rule in (("dev.1", rules[2][2]), ("dev.2", rules[-1][2])):
        topics = [topic for topic, _ in discovery_messages(HomeAssistantConfig(), DeviceTopics("p", device))]
        assert all(mqtt.topic_matches_sub(rule, topic) for topic in topics), (rule, topics)
