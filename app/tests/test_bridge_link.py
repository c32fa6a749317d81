"""The bridge the mosquitto role renders, between two real Mosquittos: it tells the central broker
its link's state (people_counter/<device>/bridge: `1` on connect, `0` as its Last Will), and the
device's own copy of that state, which its broker writes `0` while the link is down, never follows
the link up to overwrite the central `1` (the bridge carries the contract's topics by name)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from people_counter.contract import BRIDGE_DOWN, BRIDGE_TOPIC, BRIDGE_UP, DEFAULT_TOPIC_PREFIX, TOPICS_FILE
from testsupport.mosquitto_broker import MessageCollector, MosquittoBroker, mosquitto_available
from testsupport.mosquitto_role import MOSQUITTO_ROLE, ansible_playbook, render_role_templates

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
    pytest.mark.skipif(not MOSQUITTO_ROLE.is_dir(), reason="not in the repository"),
]

DEVICE = "dev1"
LINK = f"{DEFAULT_TOPIC_PREFIX}/{DEVICE}/{BRIDGE_TOPIC}"
STATE = f"{DEFAULT_TOPIC_PREFIX}/{DEVICE}/state"


def _rendered_bridge(tmp_path: Path, central: MosquittoBroker) -> str:
    host_vars = {
        "mosquitto_bridge_enabled": True,
        "mosquitto_bridge_address": central.host,
        "mosquitto_bridge_port": central.port,
        "mosquitto_bridge_tls": False,
        "mosquitto_bridge_remote_password": "bridgepw",
        "mosquitto_topics_file": str(TOPICS_FILE),  # this checkout's, wherever the package is installed
    }
    conf = render_role_templates(["people-counter.conf.j2"], host_vars, tmp_path, host=DEVICE)["people-counter.conf.j2"]
    bridge = conf[conf.index("\nconnection ") :]
    assert f"notification_topic {LINK}\n" in bridge and "notifications_local_only false\n" in bridge
    assert f"topic {DEFAULT_TOPIC_PREFIX}/{DEVICE}/# " not in bridge
    return bridge


def _publish(broker: MosquittoBroker, topic: str, message: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-u", "counter", "-P", "counterpw",
         "-t", topic, "-m", message, "-q", "1"],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip


def _retained_link(central: MosquittoBroker) -> str | None:
    reader = MessageCollector(central.host, central.port, "reader", "readerpw", [LINK]).start()
    try:
        found = reader.wait_for(lambda m: m.topic == LINK, timeout_s=2)
        return found.text if found else None
    finally:
        reader.stop()


def test_the_link_state_reaches_the_central_broker_and_its_local_copy_stays_home(tmp_path: Path) -> None:
    if ansible_playbook() is None:
        pytest.skip("ansible-playbook is not installed")
    acl = (
        f"user bridge-{DEVICE}\ntopic readwrite {DEFAULT_TOPIC_PREFIX}/{DEVICE}/#\n\n"
        f"user reader\ntopic read {DEFAULT_TOPIC_PREFIX}/#\n"
    )
    users = {f"bridge-{DEVICE}": "bridgepw", "reader": "readerpw"}
    with MosquittoBroker(users=users, acl_text=acl) as central, MosquittoBroker(devices=(DEVICE,)) as device:
        device.stop()
        with device.conf_path.open("a", encoding="utf-8") as conf:
            conf.write(_rendered_bridge(tmp_path, central))
        device.start()
        collector = MessageCollector(central.host, central.port, "reader", "readerpw", [f"{DEFAULT_TOPIC_PREFIX}/#"])
        collector.start()
        try:
            assert collector.wait_for(lambda m: m.topic == LINK and m.text == BRIDGE_UP, timeout_s=15)

            # The central broker goes and comes back (no persistence: its retained messages go too).
            # Meanwhile the device's broker writes `0` on its own copy of the link's state.
            before = len(collector.on_topic(LINK))
            central.stop()
            central.start()

            def link_since() -> list[str]:
                return [m.text for m in collector.on_topic(LINK)[before:]]

            # The bridge says `1` again once it is back (the central broker may first hear a `0`).
            assert collector.wait_for(lambda _m: BRIDGE_UP in link_since(), timeout_s=90)
            # A state sent after the reconnection arrives after anything the bridge queued before it.
            _publish(device, STATE, '{"marker": 1}')
            assert collector.wait_for(lambda m: m.topic == STATE and m.text == '{"marker": 1}', timeout_s=15)
            # ...and nothing the device's broker wrote on its own copy (`0`) followed it.
            assert link_since()[-1] == BRIDGE_UP, link_since()
            assert _retained_link(central) == BRIDGE_UP

            # The device's broker stops: the link closes with no word, and the central broker
            # publishes the bridge's Last Will.
            device.stop()
            assert collector.wait_for(lambda m: m.topic == LINK and m.text == BRIDGE_DOWN, timeout_s=10)
            assert _retained_link(central) == BRIDGE_DOWN
        finally:
            collector.stop()
