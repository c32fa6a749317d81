"""The fleet page's device table (fleet/registry.py), driven by messages and a clock of the test's own."""

from __future__ import annotations

from typing import Any

from people_counter.fleet.inbox import FleetMessage, FleetTopic
from people_counter.fleet.registry import FleetRegistry


def msg(device: str, kind: FleetTopic, data: Any, received: float, retained: bool = False) -> FleetMessage:
    return FleetMessage(device, kind, data, received, retained)


def state(ts: float, count: int = 1, total: int = 5, **more: Any) -> dict[str, Any]:
    figures = {"count": count, "total": total, "in": 3, "out": 2, "avg_duration_s": 30.0, "ts": ts}
    return {**figures, "occupancy_alert": False, "loitering_alert": False, **more}


def test_online_then_offline_from_available_then_back() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "available", "online", 100.0))
    registry.apply(msg("a", "state", state(100.0), 100.0))
    registry.sweep(100.0)
    assert registry.row("a")["status"] == "online"
    assert registry.take_changed() == {"a"}

    registry.apply(msg("a", "available", "offline", 101.0))
    registry.sweep(101.0)
    row = registry.row("a")
    assert row["status"] == "offline" and row["last_seen"] == 101.0
    assert registry.take_changed() == {"a"}

    registry.apply(msg("a", "available", "online", 102.0))
    registry.sweep(102.0)
    assert registry.row("a")["status"] == "online"


def test_offline_while_its_bridge_link_is_down_though_available_still_says_online() -> None:
    # The device's Mosquitto stopped, or its link went quiet past the keepalive (power lost): the
    # central broker publishes the bridge's Last Will `0`, while the counter's retained `online`,
    # which only the device's own broker could replace, stays.
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "available", "online", 100.0, retained=True))
    registry.apply(msg("a", "state", state(100.0), 100.0))
    registry.sweep(100.0)
    # No word of a bridge yet (or ever, for a device on the central broker itself): `available` alone.
    assert registry.row("a")["status"] == "online" and registry.row("a")["bridge"] == "unknown"
    registry.apply(msg("a", "bridge", "1", 100.0, retained=True))
    registry.sweep(100.0)
    assert registry.row("a")["status"] == "online" and registry.row("a")["bridge"] == "up"
    registry.take_changed()

    registry.apply(msg("a", "bridge", "0", 106.0))
    assert registry.take_changed() == {"a"}
    registry.sweep(106.0)
    row = registry.row("a")
    assert row["status"] == "offline" and row["bridge"] == "down" and row["available"] == "online"
    assert row["last_seen"] == 100.0  # the `0` is the central broker's word, not the device's
    assert registry.take_changed() == {"a"}

    # The link back: `1`, then the device's queued and fresh messages.
    registry.apply(msg("a", "bridge", "1", 120.0))
    registry.apply(msg("a", "state", state(120.0), 120.0))
    registry.sweep(120.0)
    assert registry.row("a")["status"] == "online" and registry.row("a")["bridge"] == "up"


def test_a_retained_bridge_down_at_subscription_is_offline_and_other_payloads_are_refused() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "available", "online", 1000.0, retained=True))
    registry.apply(msg("a", "state", state(999.0), 1000.0, retained=True))
    registry.apply(msg("a", "bridge", "0", 1000.0, retained=True))
    registry.sweep(1000.0)
    assert registry.row("a")["status"] == "offline"
    assert not registry.apply(msg("a", "bridge", "up", 1001.0))
    assert not registry.apply(msg("a", "bridge", {"state": 1}, 1001.0))
    registry.sweep(1001.0)
    assert registry.row("a")["status"] == "offline" and registry.row("a")["bridge"] == "down"


def test_silent_once_nothing_came_for_stale_after_s() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "available", "online", 100.0))
    registry.sweep(100.0)
    registry.take_changed()
    registry.sweep(114.9)
    assert registry.row("a")["status"] == "online" and not registry.take_changed()
    registry.sweep(115.0)
    assert registry.row("a")["status"] == "silent" and registry.take_changed() == {"a"}
    registry.apply(msg("a", "state", state(116.0), 116.0))
    registry.sweep(116.0)
    assert registry.row("a")["status"] == "online"


def test_a_retained_state_is_seen_at_its_own_ts_not_at_subscription() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "available", "online", 1000.0, retained=True))
    registry.apply(msg("a", "state", state(900.0), 1000.0, retained=True))
    registry.sweep(1000.0)
    row = registry.row("a")
    assert row["last_seen"] == 900.0
    assert row["status"] == "silent"  # an old retained state is no sign of life


def test_open_alerts_follow_the_state_flags() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    alert = {"type": "occupancy", "value": 12, "threshold": 10, "ts": 100.0}
    registry.apply(msg("a", "alert", alert, 100.0))
    assert registry.row("a")["alerts"] == [alert]
    registry.apply(msg("a", "state", state(101.0, occupancy_alert=True), 101.0))
    assert [a["type"] for a in registry.row("a")["alerts"]] == ["occupancy"]
    registry.apply(msg("a", "state", state(102.0, loitering_alert=True), 102.0))
    assert [a["type"] for a in registry.row("a")["alerts"]] == ["loitering"]  # occupancy ended, loitering now
    registry.apply(msg("a", "state", state(103.0), 103.0))
    assert registry.row("a")["alerts"] == []
    assert registry.totals()["open_alerts"] == 0


def test_an_older_counters_alert_closes_after_the_hold() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10, alert_hold_s=300)
    registry.apply(msg("a", "state", {"count": 1, "total": 1, "ts": 100.0}, 100.0))  # no alert flags
    registry.apply(msg("a", "alert", {"type": "loitering", "value": 95, "threshold": 60, "ts": 100.0}, 100.0))
    registry.sweep(399.0)
    assert len(registry.row("a")["alerts"]) == 1
    registry.take_changed()
    registry.sweep(400.0)
    assert registry.row("a")["alerts"] == [] and registry.take_changed() == {"a"}


def test_devices_over_the_cap_are_refused_and_bad_payloads_ignored() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=2)
    assert registry.apply(msg("a", "state", state(1.0), 1.0))
    assert registry.apply(msg("b", "state", state(1.0), 1.0))
    assert not registry.apply(msg("c", "state", state(1.0), 1.0))
    assert registry.refused_devices == 1 and set(registry.devices) == {"a", "b"}
    assert not registry.apply(msg("a", "alert", {"type": "fire", "ts": 1.0}, 1.0))
    assert not registry.apply(msg("a", "available", {"not": "text"}, 1.0))


def test_fleet_totals_count_only_reporting_devices_in_view() -> None:
    registry = FleetRegistry(stale_after_s=15, max_devices=10)
    registry.apply(msg("a", "state", state(100.0, count=2, total=12, avg_duration_s=10.0), 100.0))
    registry.apply(msg("b", "state", state(100.0, count=3, total=33, avg_duration_s=40.0), 100.0))
    registry.apply(msg("c", "state", state(100.0, count=7, total=7), 100.0))
    registry.apply(msg("c", "available", "offline", 100.0))
    registry.sweep(100.0)
    totals = registry.totals()
    assert totals["devices"] == 3 and totals["online"] == 2 and totals["offline"] == 1
    assert totals["count"] == 5  # the offline device's 7 is an old figure
    assert totals["total"] == 52
    # Visits weighted by the people who left: a 10 left with 10 s, b 30 with 40 s (c: nobody left).
    assert totals["avg_duration_s"] == round((10 * 10 + 30 * 40) / 40, 1)
