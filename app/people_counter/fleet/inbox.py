"""The central broker's messages, as plain data for the page: a paho subscription to every device.

paho's network thread parses each message (topic, size, JSON) and appends it to a bounded
deque; the page's loop drains it on its own beat (pump.py). No per-message wake-up of the
asyncio loop: a thousand devices a second cost one drain per beat. When the loop cannot keep
up, the oldest messages go first and are counted.
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from people_counter.contract import BRIDGE_TOPIC, DeviceTopic, DeviceTopics
from people_counter.errors import ConfigError
from people_counter.fleet.config import FleetMqttConfig

log = logging.getLogger("people_counter.fleet.inbox")

MAX_PENDING = 200_000

FleetTopic = DeviceTopic | Literal["bridge"]
"""What the page reads: the device's own topics, and its bridge link (contract.BRIDGE_TOPIC)."""

SUBSCRIBE_QOS: dict[FleetTopic, int] = {"state": 0, "event": 1, "alert": 1, "available": 1, "bridge": 1}
"""States at QoS 0: each is retained and superseded by the next (at least every 5 s), and at QoS 1
the broker lets only a few unacknowledged messages to one client (Mosquitto: 20) be in flight,
which caps a whole fleet's states at what one round trip allows. Events, alerts, availability and
the bridge link are each counted once: QoS 1."""


@dataclass(frozen=True, slots=True)
class FleetMessage:
    device: str
    kind: FleetTopic
    data: Any
    """The JSON of state, event and alert; the text of available and bridge."""
    received: float
    """The page's wall-clock time (time.time()) when paho handed it over."""
    retained: bool = False


class Inbox:
    """A subscription to <prefix>/+/<each device topic> and <prefix>/+/<bridge> on the central broker."""

    def __init__(self, cfg: FleetMqttConfig, max_message_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        pattern = DeviceTopics(cfg.topic_prefix, "+")
        lead = f"{cfg.topic_prefix}/+/"
        self._kinds: dict[str, FleetTopic] = {topic[len(lead) :]: kind for topic, kind in pattern.by_topic().items()}
        self._kinds[BRIDGE_TOPIC] = "bridge"
        self.subscriptions = [(lead + rest, SUBSCRIBE_QOS[kind]) for rest, kind in self._kinds.items()]
        self._pending: collections.deque[FleetMessage] = collections.deque(maxlen=MAX_PENDING)
        self.received = 0
        self.dropped = 0
        self.ignored = 0
        self.connected = False
        self.error = ""
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None

    def start(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.cfg.client_id)
        if self.cfg.username:
            password = None
            if self.cfg.password_file is not None:
                try:
                    password = self.cfg.password_file.read_text(encoding="utf-8").strip()
                except OSError as error:
                    raise ConfigError(f"mqtt.password_file: cannot read: {error.strerror or error}") from None
            client.username_pw_set(self.cfg.username, password)
        if self.cfg.ca_file is not None:
            client.tls_set(ca_certs=str(self.cfg.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=10)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def drain(self) -> list[FleetMessage]:
        """Everything received since the last drain, oldest first."""
        with self._lock:
            messages = list(self._pending)
            self._pending.clear()
        return messages

    # -- paho's thread ---------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            self.connected, self.error = False, f"refused: {reason}"
            log.warning("the central broker refused the connection: %s", reason)
            return
        client.subscribe(self.subscriptions)
        self.connected, self.error = True, ""
        topics = ", ".join(f"{topic} (QoS {qos})" for topic, qos in self.subscriptions)
        log.info("subscribed to %s on %s:%d", topics, self.cfg.host, self.cfg.port)

    def _on_disconnect(self, _c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        self.connected, self.error = False, f"disconnected: {reason}"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        parsed = self.parse(message.topic, bytes(message.payload), bool(message.retain))
        if parsed is None:
            return
        with self._lock:
            if len(self._pending) == MAX_PENDING:
                self.dropped += 1
            self._pending.append(parsed)

    def parse(self, topic: str, payload: bytes, retained: bool) -> FleetMessage | None:
        device, _, rest = topic[len(self.cfg.topic_prefix) + 1 :].partition("/")
        kind = self._kinds.get(rest)
        if kind is None or not device:
            return None
        if len(payload) > self.max_message_bytes:
            return self._ignore(topic, f"{len(payload)} bytes, over max_message_bytes")
        data: Any
        if kind in ("available", "bridge"):
            data = payload.decode(errors="replace")
        else:
            try:
                data = json.loads(payload)
            except ValueError:
                return self._ignore(topic, "not JSON")
            if not isinstance(data, dict):
                return self._ignore(topic, "not a JSON object")
        return FleetMessage(device, kind, data, self.clock(), retained)

    def _ignore(self, topic: str, why: str) -> None:
        self.ignored += 1
        # One line each; logging_setup's repeat filter holds back a flood of them.
        log.warning("ignoring a message on %s: %s", topic, why)
