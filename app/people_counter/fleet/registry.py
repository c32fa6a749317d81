"""The live device table: each device's latest figures, availability, last-seen time and open alerts.

Plain data, no I/O: the subscriber hands it messages (inbox.py's FleetMessage), and the time is
always passed in, so a test drives it with any clock.

- status: `offline` once `available` says so (the device's Last Will, bridged), or once its bridge
  link says `0` (the bridge's Last Will on the central broker: the device's Mosquitto stopped, or
  the link closed or went quiet past its keepalive, as when the device loses power); `silent` when
  the device has sent nothing for `stale_after_s` (a link that went away leaving no word); `online`
  otherwise. A bridge that comes back (`1`) leaves the status to `available` again.
- last_seen: when the page received the device's latest message (the bridge link's messages
  aside: its `0` comes from the central broker, not the device); for a retained state heard at
  subscription, the state's own `ts`.
- open alerts: an alert stays open while the device's state says `<type>_alert: true`, and closes
  when it says false. A state without those flags (an older counter) leaves an alert open for
  `alert_hold_s` after it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from people_counter.contract import AVAILABLE_OFFLINE, BRIDGE_DOWN, BRIDGE_UP
from people_counter.fleet.inbox import FleetMessage

ALERT_TYPES = ("occupancy", "loitering")
ALERT_FIELDS = ("type", "value", "threshold", "ts")
FIGURES = ("count", "total", "in", "out", "avg_duration_s", "fps", "input", "store", "ts")
"""The state's figures the page shows; the rest of a state is not kept."""


@dataclass
class DeviceView:
    device: str
    figures: dict[str, Any] = field(default_factory=dict)
    available: str = "unknown"
    bridge: str = "unknown"
    """The bridge link: `up`, `down`, or `unknown` (none heard, as with a device on the central broker itself)."""
    last_seen: float | None = None
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Open alerts by type: the alert message, plus `received` (the page's time)."""
    status: str = "silent"
    alert_flags: bool = False
    """Whether its states carry `<type>_alert` (a counter new enough to say when an alert ends)."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _figure(view: DeviceView, key: str) -> float:
    return _number(view.figures.get(key)) or 0.0


class FleetRegistry:
    def __init__(self, stale_after_s: float, max_devices: int, alert_hold_s: float = 300.0) -> None:
        self.stale_after_s = stale_after_s
        self.max_devices = max_devices
        self.alert_hold_s = alert_hold_s
        self.devices: dict[str, DeviceView] = {}
        self.refused_devices = 0
        self._changed: set[str] = set()

    def _view(self, device: str) -> DeviceView | None:
        view = self.devices.get(device)
        if view is None:
            if len(self.devices) >= self.max_devices:
                self.refused_devices += 1
                return None
            view = self.devices[device] = DeviceView(device)
        return view

    def apply(self, message: FleetMessage) -> bool:
        """Take one message; False if it was refused (a device over max_devices, a bad payload)."""
        view = self._view(message.device)
        if view is None:
            return False
        if message.kind == "bridge":
            if message.data not in (BRIDGE_UP, BRIDGE_DOWN):
                return False
            view.bridge = "up" if message.data == BRIDGE_UP else "down"
            self._changed.add(view.device)
            return True
        if message.kind == "available":
            if not isinstance(message.data, str):
                return False
            view.available = message.data
        elif not isinstance(message.data, dict):
            return False
        elif message.kind == "state":
            self._take_state(view, message.data, message.retained)
        elif message.kind == "alert":
            alert_type = message.data.get("type")
            if alert_type not in ALERT_TYPES:
                return False
            alert = {key: message.data.get(key) for key in ALERT_FIELDS}
            view.alerts[str(alert_type)] = {**alert, "received": message.received}
        if not message.retained:
            view.last_seen = message.received
        self._changed.add(view.device)
        return True

    def _take_state(self, view: DeviceView, state: dict[str, Any], retained: bool) -> None:
        view.figures = {key: state[key] for key in FIGURES if key in state}
        view.alert_flags = all(f"{alert_type}_alert" in state for alert_type in ALERT_TYPES)
        ts = _number(state.get("ts"))
        if retained and ts is not None and (view.last_seen is None or ts > view.last_seen):
            view.last_seen = ts
        for alert_type in ALERT_TYPES:
            flag = state.get(f"{alert_type}_alert")
            if flag is False:
                view.alerts.pop(alert_type, None)
            elif flag is True and alert_type not in view.alerts:
                view.alerts[alert_type] = {"type": alert_type, "value": None, "threshold": None, "ts": ts}

    def status_of(self, view: DeviceView, now: float) -> str:
        if view.available == AVAILABLE_OFFLINE or view.bridge == "down":
            return "offline"
        if view.last_seen is None or now - view.last_seen >= self.stale_after_s:
            return "silent"
        return "online"

    def sweep(self, now: float) -> None:
        """Status changes that come with time alone, and alerts of older counters that expire."""
        for view in self.devices.values():
            status = self.status_of(view, now)
            if status != view.status:
                view.status = status
                self._changed.add(view.device)
            if view.alerts and not view.alert_flags:
                self._expire_alerts(view, now)

    def _expire_alerts(self, view: DeviceView, now: float) -> None:
        for alert_type, alert in list(view.alerts.items()):
            received = _number(alert.get("received"))
            if received is not None and now - received >= self.alert_hold_s:
                del view.alerts[alert_type]
                self._changed.add(view.device)

    def take_changed(self) -> set[str]:
        changed, self._changed = self._changed, set()
        return changed

    def row(self, device: str) -> dict[str, Any]:
        view = self.devices[device]
        return {
            "device": view.device,
            "status": view.status,
            "available": view.available,
            "bridge": view.bridge,
            "last_seen": view.last_seen,
            **view.figures,
            "alerts": [{k: v for k, v in a.items() if k != "received"} for a in view.alerts.values()],
        }

    def totals(self) -> dict[str, Any]:
        """The whole fleet: devices by status, and the sums of their figures."""
        views = list(self.devices.values())
        by_status = {status: sum(1 for v in views if v.status == status) for status in ("online", "silent", "offline")}
        sums = {key: sum(_figure(v, key) for v in views) for key in ("total", "in", "out")}
        # In view now: only devices that are reporting; a silent or offline one's figure is old.
        sums["count"] = sum(_figure(v, "count") for v in views if v.status == "online")
        # The mean visit of everyone who left: each device's mean, weighted by the people who left it.
        left = [(max(0.0, _figure(v, "total") - _figure(v, "count")), v) for v in views]
        weight = sum(n for n, _ in left)
        visit = sum(n * _figure(v, "avg_duration_s") for n, v in left) / weight if weight else None
        return {
            "devices": len(views),
            **by_status,
            **{key: int(sums[key]) for key in ("count", "total", "in", "out")},
            "avg_duration_s": None if visit is None else round(visit, 1),
            "open_alerts": sum(len(v.alerts) for v in views),
        }
