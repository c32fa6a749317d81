"""The fleet page's reading of the central broker's messages (fleet/inbox.py), without a broker."""

from __future__ import annotations

from people_counter.fleet.config import FleetMqttConfig
from people_counter.fleet.inbox import FleetMessage, Inbox


def inbox() -> Inbox:
    return Inbox(FleetMqttConfig(topic_prefix="people_counter"), max_message_bytes=1024, clock=lambda: 42.0)


def test_it_subscribes_to_every_devices_four_topics_and_its_bridge_link_states_at_qos_0() -> None:
    assert sorted(inbox().subscriptions) == [
        ("people_counter/+/alert", 1),
        ("people_counter/+/available", 1),
        ("people_counter/+/bridge", 1),
        ("people_counter/+/event", 1),
        ("people_counter/+/state", 0),
    ]


def test_messages_become_plain_data_named_by_device_and_kind() -> None:
    box = inbox()
    assert box.parse("people_counter/shop-1/state", b'{"count": 2}', True) == FleetMessage(
        "shop-1", "state", {"count": 2}, 42.0, True
    )
    assert box.parse("people_counter/shop-1/available", b"offline", False) == FleetMessage(
        "shop-1", "available", "offline", 42.0, False
    )
    assert box.parse("people_counter/shop-1/bridge", b"0", True) == FleetMessage("shop-1", "bridge", "0", 42.0, True)


def test_what_is_not_the_contract_is_ignored_and_counted() -> None:
    box = inbox()
    assert box.parse("people_counter/shop-1/person", b'{"count": 1}', False) is None  # the compat topic
    assert box.parse("people_counter/shop-1/state/extra", b"{}", False) is None
    assert box.parse("people_counter//state", b"{}", False) is None
    assert box.ignored == 0  # not ours: silently skipped
    assert box.parse("people_counter/shop-1/state", b"not json", False) is None
    assert box.parse("people_counter/shop-1/event", b"[1, 2]", False) is None
    assert box.parse("people_counter/shop-1/alert", b"{" + b" " * 2000 + b"}", False) is None
    assert box.ignored == 3
