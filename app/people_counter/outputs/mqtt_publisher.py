"""The counter's MQTT output: retained state, events, alerts, availability and Home Assistant discovery.

(DESIGN.md, MQTT contract; docs/mqtt.md.)

The counting loop calls into this module on every frame, so no call here may wait on the
broker. paho's network thread does all socket work; the calls below only hand messages to
paho's bounded queue and return.

Ordering rule for the retained `state`: at most one state message is handed to paho at a time.
A newer state waits (as `pending`) until the broker acknowledged the previous one. Without this,
states queued during an outage would be delivered after the fresh state republished on
reconnect, and the broker would retain a stale one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from people_counter.config import MqttConfig
from people_counter.contract import (
    AVAILABLE_OFFLINE,
    AVAILABLE_ONLINE,
    COMPAT_COUNT_TOPIC,
    COMPAT_DURATION_TOPIC,
    DeviceTopics,
    alert_message,
    compat_count_message,
    compat_duration_message,
    event_message,
    payload,
    state_message,
)
from people_counter.errors import ConfigError
from people_counter.outputs.ha_discovery import discovery_messages
from people_counter.outputs.paho_log import paho_logger
from people_counter.stage_data import Alert, CounterState, PersonEvent

log = logging.getLogger("people_counter.mqtt")

QOS = 1
MAX_INFLIGHT = 20
# Slots of paho's queue kept free of events and alerts, so that after a long outage that filled
# the queue, `online`, the state, the compatibility count and `offline` still get through.
RESERVED_SLOTS = 8
STOP_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 3.0
# MQTT 3.1.1 CONNACK 4 and 5, and their MQTT 5 forms: the broker did not accept who we are.
_LOGIN_REFUSED = {4, 5, 0x86, 0x87}


class MqttPublisher:
    """Publishes a device's figures to Mosquitto without ever blocking the caller."""

    def __init__(self, cfg: MqttConfig, device_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self._clock = clock
        self.topics = DeviceTopics(cfg.topic_prefix, device_id)
        self.last_error: str | None = None
        self.dropped_messages = 0
        """Events, alerts and compatibility messages refused because the outgoing queue was full."""
        self.connect_attempts = 0
        """Connection attempts that ended (refused, failed or accepted), for tests of the backoff."""
        self.connections = 0
        self._connected = False
        self._started = False
        self._outage_logged = False
        self._lock = threading.Lock()
        # State bookkeeping; guarded by _lock because on_connect runs on paho's thread.
        self._latest: CounterState | None = None
        self._sent_figures: tuple[object, ...] | None = None
        self._sent_at = float("-inf")
        self._state_mid: int | None = None
        self._republish = False
        self._compat_sent: tuple[int, int] | None = None
        self._discovery = [
            (topic, "" if message is None else payload(message))
            for topic, message in discovery_messages(cfg.homeassistant, self.topics)
        ]
        self._discovery_due = False
        # Message ids handed to paho and not yet acknowledged: our view of paho's queue. paho
        # calls on_publish with its queue mutex held, so _ack_lock must never be held while
        # calling into paho. A PUBACK can beat the registration of its id: _early_acks.
        self._ack_lock = threading.Lock()
        self._unacked: set[int] = set()
        self._early_acks: set[int] = set()
        self._client = self._make_client()

    # -- setup -----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"people-counter-{self.device_id}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.enable_logger(paho_logger("people_counter.mqtt.paho"))
        # paho refuses new QoS>0 messages beyond this (publish() returns MQTT_ERR_QUEUE_SIZE);
        # it must be set before connecting.
        client.max_queued_messages_set(self.cfg.max_queued)
        client.max_inflight_messages_set(min(MAX_INFLIGHT, self.cfg.max_queued))
        client.reconnect_delay_set(1, int(self.cfg.reconnect_max_s))
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.will_set(self.topics.available, AVAILABLE_OFFLINE, qos=QOS, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _read_password(self) -> str | None:
        path = self.cfg.password_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise ConfigError(f"mqtt.password_file: {path}: no such file") from None
        except OSError as error:
            raise ConfigError(f"mqtt.password_file: {path}: cannot read: {error.strerror}") from None

    def _configure_tls(self) -> None:
        tls = self.cfg.tls
        if tls is None:
            return
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"mqtt.tls.{name}: {path}: no such file")
        self._client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
        )
        self._client.tls_insecure_set(tls.insecure)

    def start(self) -> None:
        """Begin connecting in the background; a broker that is down now is retried with backoff.

        Raises ConfigError at once for a missing password, certificate or key file.
        """
        if self._started:
            return
        password = self._read_password()
        if password is not None and self.cfg.username is None:
            raise ConfigError("mqtt.password_file is set but mqtt.username is not")
        if self.cfg.username is not None or password is not None:
            self._client.username_pw_set(self.cfg.username, password)
        self._configure_tls()
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()
        self._started = True

    # -- paho callbacks (paho's network thread) --------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        self.connect_attempts += 1
        if reason.is_failure:
            self._connected = False
            if reason.value in _LOGIN_REFUSED:
                user = self.cfg.username or "(none)"
                self.last_error = (
                    f"MQTT broker {self._where} refused the login for user '{user}': {str(reason).lower()}"
                )
            else:
                self.last_error = f"MQTT broker {self._where} refused the connection: {str(reason).lower()}"
            # One line per attempt; paho's backoff spaces the attempts out.
            log.error("%s", self.last_error)
            return
        self._connected = True
        self.connections += 1
        self.last_error = None
        self._outage_logged = False
        log.info("connected to MQTT broker %s as %s", self._where, self.device_id)
        self._publish_raw(self.topics.available, AVAILABLE_ONLINE, retain=True)
        # A restarted broker without persistence has forgotten the retained state; a new
        # connection must never leave stale figures behind.
        with self._lock:
            self._republish = True
            self._compat_sent = None  # a broker without persistence forgot the retained `person`
            self._send_state_if_due(self._clock())
            # Retained, but sent again for the same reason as the state.
            self._discovery_due = True
            self._send_discovery()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        self._connected = False
        self.connect_attempts += 1
        # paho does not pass the cause on; these are the ones it can be.
        self.last_error = (
            f"cannot connect to MQTT broker {self._where} (not listening, unreachable, or the TLS handshake failed)"
        )
        if not self._outage_logged:
            log.warning("%s; retrying with backoff up to %s s", self.last_error, self.cfg.reconnect_max_s)
            self._outage_logged = True
        else:
            log.debug("%s", self.last_error)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: object,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected and reason.is_failure:
            # paho reports a dropped socket as "Unspecified error", which tells a reader nothing.
            detail = "" if reason.value == 0x80 else f": {str(reason).lower()}"
            self.last_error = f"lost the connection to MQTT broker {self._where}{detail}"
            log.warning("%s; reconnecting", self.last_error)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: object, mid: int, _reason: ReasonCode, _props: object
    ) -> None:
        with self._ack_lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)

    # -- publishing (the caller's thread) ---------------------------------------------------------

    def _register(self, mid: int) -> None:
        with self._ack_lock:
            if mid in self._early_acks:
                self._early_acks.discard(mid)
            else:
                self._unacked.add(mid)

    def _is_unacked(self, mid: int | None) -> bool:
        with self._ack_lock:
            return mid is not None and mid in self._unacked

    @property
    def queued_messages(self) -> int:
        """QoS 1 messages handed to paho and not yet acknowledged by the broker."""
        with self._ack_lock:
            return len(self._unacked)

    @property
    def connected(self) -> bool:
        return self._connected

    def _publish_raw(self, topic: str, payload: str, retain: bool = False) -> mqtt.MQTTMessageInfo | None:
        """Hand one message to paho; never raises, never blocks. None when paho refused it.

        paho 2.2 with a full queue (max_queued_messages) does not raise: publish() returns an
        info with rc MQTT_ERR_QUEUE_SIZE and forgets the new message, keeping the older ones.
        """
        try:
            info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        except Exception:
            # Whatever paho raises (a bad topic, a closed socket pair at shutdown), counting
            # must go on: log it with its traceback and carry on without this message.
            log.exception("cannot publish on %s", topic)
            return None
        # NO_CONN is fine: the QoS 1 message stays in paho's queue and goes out on reconnect.
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self._note_dropped(topic)
            return None
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.debug("publish on %s returned %s", topic, mqtt.error_string(info.rc))
        self._register(info.mid)
        return info

    def _note_dropped(self, topic: str) -> None:
        self.dropped_messages += 1
        # Log the first drop and then every thousandth, not one line per message.
        if self.dropped_messages == 1 or self.dropped_messages % 1000 == 0:
            log.warning(
                "MQTT outgoing queue full (%d messages): dropped %d message(s) so far, latest on %s",
                self.cfg.max_queued,
                self.dropped_messages,
                topic,
            )

    def _publish_queued(self, topic: str, message: Mapping[str, object]) -> None:
        if self.queued_messages >= self.cfg.max_queued - RESERVED_SLOTS:
            self._note_dropped(topic)
            return
        self._publish_raw(topic, payload(message))

    def publish_event(self, event: PersonEvent) -> None:
        self._publish_queued(self.topics.event, event_message(event))
        if self.cfg.compat_topics and event.type == "exit":
            # The original UI counts these messages for its "Total Counted".
            self._publish_queued(COMPAT_DURATION_TOPIC, compat_duration_message(event.duration_s))

    def publish_alert(self, alert: Alert) -> None:
        self._publish_queued(self.topics.alert, alert_message(alert))

    def publish_state(self, state: CounterState, force: bool = False) -> None:
        """Offer the latest state; it goes out when due (see _state_due). Call this every frame."""
        with self._lock:
            self._latest = state
            if force:
                self._republish = True
            self._send_state_if_due(self._clock())
            self._send_discovery()

    def _state_due(self, state: CounterState, now: float) -> bool:
        elapsed = now - self._sent_at
        if self._republish:
            return True
        if state.figures() != self._sent_figures:
            return elapsed >= self.cfg.min_interval_s
        return elapsed >= self.cfg.heartbeat_s

    def _send_state_if_due(self, now: float) -> None:
        """With _lock held. Sends the latest state if due, connected and nothing else in flight."""
        state = self._latest
        if state is None or not self._connected or not self._state_due(state, now):
            return
        if self._is_unacked(self._state_mid):
            return  # the previous state is still unacknowledged: this one stays pending
        info = self._publish_raw(self.topics.state, payload(state_message(state)), retain=True)
        if info is None:
            return
        self._state_mid = info.mid
        self._sent_at = now
        self._sent_figures = state.figures()
        self._republish = False
        if self.cfg.compat_topics:
            self._send_compat_count(state)

    def _send_compat_count(self, state: CounterState) -> None:
        figures = (state.count, state.total)
        if figures == self._compat_sent:
            return
        message = compat_count_message(state.count, state.total)
        # Retained, so that the original UI opened in a quiet scene shows the figures at once.
        if self._publish_raw(COMPAT_COUNT_TOPIC, payload(message), retain=True) is not None:
            self._compat_sent = figures

    def _send_discovery(self) -> None:
        """With _lock held. The Home Assistant configs (or their removal), once per connection.

        They wait until paho's queue has room for all of them: after an outage its backlog drains first.
        """
        if not self._discovery_due or not self._connected:
            return
        if self.queued_messages + len(self._discovery) > self.cfg.max_queued:
            return
        for topic, text in self._discovery:
            self._publish_raw(topic, text, retain=True)
        self._discovery_due = False

    # -- shutdown ------------------------------------------------------------------------------------

    def stop(self, final_state: CounterState | None = None) -> None:
        """Publish the final state and `offline`, then disconnect; returns within about 2 s."""
        if not self._started:
            return
        self._started = False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        if self._connected:
            with self._lock:
                if final_state is not None:
                    self._latest = final_state
                self._republish = True
                # The final state goes out even if the previous one is still unacknowledged.
                self._state_mid = None
                self._send_state_if_due(self._clock())
            offline = self._publish_raw(self.topics.available, AVAILABLE_OFFLINE, retain=True)
            # Wait for the broker's PUBACK so that the disconnect cannot overtake `offline`.
            while offline is not None and self._is_unacked(offline.mid) and time.monotonic() < deadline - 1.0:
                time.sleep(0.01)
        self._client.disconnect()
        self._stop_network_thread(max(0.1, deadline - time.monotonic()))
        self._connected = False

    def _stop_network_thread(self, timeout_s: float) -> None:
        # loop_stop() joins paho's thread with no timeout, and that thread may be stuck writing to
        # a broker that no longer reads; join it from a helper so this call stays bounded.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        if stopper.is_alive():
            log.warning("MQTT network thread did not stop within %.1f s; leaving it behind", timeout_s)
