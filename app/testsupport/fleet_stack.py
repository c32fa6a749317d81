"""The fleet page as a child process, and simulated devices that speak the MQTT contract, for tests and the bench.

    with MosquittoBroker() as broker, short_tmp() as run, FleetProcess(run, broker) as fleet:
        device = SimDevice("shop-1")
        with DeviceClient(broker, device) as client:
            client.publish_state()                 # contract.state_message of the device's figures
        cookie = fleet.cookie()

A SimDevice is plain data: figures that change as people enter and leave, and the contract's
payloads of them (contract.py's builders). DeviceClient publishes them as a device's counter
does, with its Last Will on `available`; kill() drops its connection without a goodbye, so the
broker publishes the will.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from people_counter.contract import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    DEFAULT_TOPIC_PREFIX,
    DeviceTopics,
    alert_message,
    event_message,
    payload,
    state_message,
)
from people_counter.dashboard.passwords import hash_password
from people_counter.stage_data import Alert, CounterState, PersonEvent
from testsupport.helpers import free_port
from testsupport.live_stack import DEFAULT_PASSWORD, BrokerLike, _Child

_STARTUP_S = 15.0


@dataclass
class SimDevice:
    """One device's counter, simulated: its figures, and the contract's payloads of them."""

    device_id: str
    count: int = 0
    total: int = 0
    crossed_in: int = 0
    crossed_out: int = 0
    visits: list[float] = field(default_factory=list)
    next_track: int = 1
    in_view: dict[int, float] = field(default_factory=dict)
    occupancy_alert: bool = False
    started: float = field(default_factory=time.time)

    @property
    def topics(self) -> DeviceTopics:
        return DeviceTopics(DEFAULT_TOPIC_PREFIX, self.device_id)

    def state(self, ts: float) -> dict[str, object]:
        avg = sum(self.visits) / len(self.visits) if self.visits else 0.0
        return state_message(
            CounterState(
                count=len(self.in_view),
                total=self.total,
                in_count=self.crossed_in,
                out_count=self.crossed_out,
                avg_duration_s=avg,
                fps=10.0,
                inference_ms=8.0,
                dropped_frames=0,
                input="ok",
                uptime_s=ts - self.started,
                ts=ts,
                occupancy_alert=self.occupancy_alert,
            )
        )

    def enter(self, ts: float) -> dict[str, Any]:
        track = self.next_track
        self.next_track += 1
        self.in_view[track] = ts
        self.total += 1
        self.crossed_in += 1
        return dict(event_message(PersonEvent("enter", track, ts)))

    def leave(self, ts: float) -> dict[str, Any] | None:
        if not self.in_view:
            return None
        track = min(self.in_view)
        duration = ts - self.in_view.pop(track)
        self.visits.append(duration)
        self.crossed_out += 1
        return dict(event_message(PersonEvent("exit", track, ts, duration)))

    def alert(self, ts: float, value: float = 12, threshold: float = 10) -> dict[str, Any]:
        self.occupancy_alert = True
        return dict(alert_message(Alert("occupancy", value, threshold, ts)))


def device_client(device: SimDevice, client_id: str | None = None) -> mqtt.Client:
    """A paho client set up as a device's counter: the `counter` user, a Last Will of `offline`."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sim-{uuid.uuid4().hex[:10]}")
    client.username_pw_set("counter", "counterpw")
    client.will_set(device.topics.available, AVAILABLE_OFFLINE, qos=1, retain=True)
    return client


class DeviceClient:
    """A simulated device connected to a broker, publishing with its own network thread."""

    def __init__(self, broker: BrokerLike, device: SimDevice) -> None:
        self.device = device
        self.client = device_client(device)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def _publish(self, topic: str, body: str, retain: bool = False) -> None:
        self.client.publish(topic, body, qos=1, retain=retain).wait_for_publish(5)

    def online(self) -> None:
        self._publish(self.device.topics.available, AVAILABLE_ONLINE, retain=True)

    def offline(self) -> None:
        self._publish(self.device.topics.available, AVAILABLE_OFFLINE, retain=True)

    def publish_state(self, ts: float | None = None) -> dict[str, object]:
        state = self.device.state(time.time() if ts is None else ts)
        self._publish(self.device.topics.state, payload(state), retain=True)
        return state

    def publish_event(self, event: dict[str, Any] | None) -> None:
        if event is not None:
            self._publish(self.device.topics.event, payload(event))

    def publish_alert(self, alert: dict[str, Any]) -> None:
        self._publish(self.device.topics.alert, payload(alert))

    def kill(self) -> None:
        """The connection drops without a DISCONNECT (a power cut): the broker sends the Last Will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FleetProcess(_Child):
    """people-counter-fleet on a free loopback port, reading the given broker as its `dashboard` user."""

    name = "fleet"

    def __init__(
        self,
        run_dir: Path,
        broker: BrokerLike,
        password: str = DEFAULT_PASSWORD,
        extra: dict[str, Any] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """tls: (certificate, key, the CA that signed it) for HTTPS."""
        super().__init__(run_dir)
        self.ssl_context = ssl.create_default_context(cafile=str(tls[2])) if tls else None
        self.password = password
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        pw_file = run_dir / "fleet-mqtt.pw"
        pw_file.write_text("dashpw\n")
        pw_file.chmod(0o600)
        self.database = run_dir / "fleet.sqlite3"
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": self.port},
            "auth": {
                "password_hash": hash_password(password, b"test-salt-fixed!"),
                "session_secret_file": str(run_dir / "fleet-session.key"),
            },
            "mqtt": {"host": broker.host, "port": broker.port, "username": "dashboard", "password_file": str(pw_file)},
            "database": str(self.database),
            "stale_after_s": 15,
            "push_interval_s": 0.1,
            "flush_interval_s": 0.5,
            **(extra or {}),
        }
        if tls is not None:
            config["tls"] = {"cert_file": str(tls[0]), "key_file": str(tls[1])}
        self.config_path = run_dir / "fleet.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> FleetProcess:
        self._spawn([sys.executable, "-m", "people_counter.fleet.cli", "-c", str(self.config_path)])
        deadline = time.monotonic() + _STARTUP_S
        while True:
            try:
                status, _, _ = self.request("GET", "/healthz")
                if status in (200, 503):
                    return self
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"people-counter-fleet did not start:\n{self.log()}")
            time.sleep(0.05)

    def __enter__(self) -> FleetProcess:
        return self.start()

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        if self.ssl_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self, method: str, path: str, cookie: str = "", body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, body, {**({"Cookie": cookie} if cookie else {}), **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def login(self, password: str | None = None) -> tuple[int, str]:
        """POST the login form: (status, the Set-Cookie header, whole)."""
        form = "password=" + (self.password if password is None else password)
        status, headers, _ = self.request(
            "POST", "/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        return status, headers.get("set-cookie", "")

    def cookie(self) -> str:
        status, set_cookie = self.login()
        if status != 303 or not set_cookie:
            raise RuntimeError(f"login failed with HTTP {status}")
        return set_cookie.split(";", 1)[0]

    def get_json(self, path: str, cookie: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path, cookie)
        return status, json.loads(body) if body.startswith((b"{", b"[")) else body.decode()
