"""Live figures: a server-side MQTT subscription, pushed to browsers with Server-Sent Events.

paho runs its network loop in its own thread; every message is handed to the asyncio
loop, which keeps the latest state and the recent alerts, and pushes each change to
every SSE client's small queue (a slow browser loses old updates, never the newest).

A message over `max_message_bytes`, or not a JSON object, is ignored with a warning (its
repeats held back by logging_setup); the recent alerts are bounded in count and in bytes.
A browser that reads nothing for `write_timeout_s` loses its SSE connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion

from people_counter.contract import DeviceTopic, DeviceTopics
from people_counter.dashboard.config import DashboardMqttConfig
from people_counter.dashboard.stalled import drop_stalled

log = logging.getLogger("people_counter.dashboard.live")

RECENT_ALERTS = 50
RECENT_ALERTS_BYTES = 64 * 1024  # a real alert is ~150 bytes: 50 of them fit many times over
_CLIENT_QUEUE = 16
HEARTBEAT_S = 1.0


class LiveFeed:
    """The latest state, availability and alerts of one device, as MQTT reports them."""

    def __init__(
        self,
        cfg: DashboardMqttConfig,
        stale_after_s: float,
        max_message_bytes: int = 64 * 1024,
        write_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.stale_after_s = stale_after_s
        self.max_message_bytes = max_message_bytes
        self.write_timeout_s = write_timeout_s
        self.clock = clock
        self.topics = DeviceTopics(cfg.topic_prefix, cfg.device_id).by_topic()
        self.state: dict[str, Any] = {}
        self.state_received = 0.0
        self.available = "unknown"
        self.broker_connected = False
        self.broker_error = ""
        self.input_not_ok_since: float | None = None
        """When (self.clock) the state's `input` stopped being "ok"; None while it is."""
        self.alerts: collections.deque[dict[str, Any]] = collections.deque()
        self._alert_sizes: collections.deque[int] = collections.deque()
        self._clients: set[asyncio.Queue[tuple[str, str]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mqtt: mqtt.Client | None = None
        self.extra_health: Callable[[], dict[str, Any]] = dict
        self.listeners: list[Callable[[DeviceTopic, Any], None]] = []
        """Told of each accepted message, on the asyncio loop: its kind and its JSON (for `available`, the text)."""

    # -- MQTT (paho's thread) --------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dashboard-{uuid.uuid4().hex[:8]}")
        if self.cfg.username:
            password = None
            if self.cfg.password_file is not None:
                password = self.cfg.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(self.cfg.username, password)
        if self.cfg.ca_file is not None:
            client.tls_set(ca_certs=str(self.cfg.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        # connect_async: a broker that is down at start is retried by paho's loop.
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=10)
        client.loop_start()
        self._mqtt = client

    def stop(self) -> None:
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            self._call(self._set_broker, False, f"refused: {reason}")
            return
        client.subscribe([(topic, 1) for topic in self.topics])
        self._call(self._set_broker, True, "")

    def _on_disconnect(self, _c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        self._call(self._set_broker, False, f"disconnected: {reason}")

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        size = len(message.payload)
        if size > self.max_message_bytes:
            self._call(
                self._ignore, "%s: %d bytes, over max_message_bytes (%d)", message.topic, size, self.max_message_bytes
            )
            return
        self._call(self._apply, message.topic, bytes(message.payload))

    # -- asyncio loop ------------------------------------------------------------------------

    def _set_broker(self, connected: bool, error: str) -> None:
        if connected != self.broker_connected:
            log.info("broker %s%s", "connected" if connected else "lost", f" ({error})" if error else "")
        self.broker_connected = connected
        self.broker_error = error
        self.push("snapshot", self.snapshot())

    def _ignore(self, why: str, *args: object) -> None:
        """One warning per kind of bad message (a fixed template each, for the RepeatFilter)."""
        log.warning("ignoring a message on " + why, *args)

    def _apply(self, topic: str, payload: bytes) -> None:
        kind = self.topics.get(topic)
        if kind == "available":
            self.available = payload.decode(errors="replace")
            self._tell(kind, self.available)
            self.push("snapshot", self.snapshot())
            return
        try:
            data = json.loads(payload)
        except ValueError:
            self._ignore("%s: not JSON", topic)
            return
        if kind is None:
            return
        if not isinstance(data, dict):
            self._ignore("%s: not a JSON object", topic)
            return
        self._tell(kind, data)
        if kind == "state":
            self.state = data
            self.state_received = time.time()
            if data.get("input", "ok") == "ok":
                self.input_not_ok_since = None
            elif self.input_not_ok_since is None:
                self.input_not_ok_since = self.clock()
            self.push("snapshot", self.snapshot())
        elif kind == "alert":
            self._keep_alert(data, len(payload))
            self.push("alert", json.dumps(data))
        elif kind == "event":
            self.push("event", json.dumps(data))

    def _tell(self, kind: DeviceTopic, data: Any) -> None:
        for listener in self.listeners:
            listener(kind, data)

    def _keep_alert(self, data: dict[str, Any], size: int) -> None:
        self.alerts.appendleft(data)
        self._alert_sizes.appendleft(size)
        while len(self.alerts) > RECENT_ALERTS or sum(self._alert_sizes) > RECENT_ALERTS_BYTES:
            self.alerts.pop()
            self._alert_sizes.pop()

    def input_not_ok_for_s(self) -> float | None:
        """How long the state's `input` has been other than "ok", by this dashboard's clock."""
        return None if self.input_not_ok_since is None else self.clock() - self.input_not_ok_since

    def state_age_s(self) -> float | None:
        """Seconds since the counter made its latest state (its ts; same device clock)."""
        if not self.state:
            return None
        ts = self.state.get("ts")
        made = float(ts) if isinstance(ts, int | float) else self.state_received
        return max(0.0, time.time() - made)

    def fresh(self) -> bool:
        age = self.state_age_s()
        return age is not None and age < self.stale_after_s

    def snapshot(self) -> str:
        age = self.state_age_s()
        return json.dumps(
            {
                "state": self.state,
                "state_age_s": None if age is None else round(age, 1),
                "fresh": self.fresh(),
                "device_id": self.cfg.device_id,
                "available": self.available,
                "broker": {"connected": self.broker_connected, "error": self.broker_error},
                **self.extra_health(),
            }
        )

    def push(self, event: str, data: str) -> None:
        for queue in self._clients:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait((event, data))

    async def heartbeat(self) -> None:
        """A snapshot every second: ages, staleness and encoder health change with time alone."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if self._clients:
                self.push("snapshot", self.snapshot())

    async def sse(self, request: web.Request) -> web.StreamResponse:
        """GET /events: text/event-stream of `snapshot`, `alert` and `event` messages."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(_CLIENT_QUEUE)
        queue.put_nowait(("snapshot", self.snapshot()))
        self._clients.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                event, data = await queue.get()
                message = f"event: {event}\ndata: {data}\n\n".encode()
                await asyncio.wait_for(response.write(message), self.write_timeout_s)
        except TimeoutError:
            drop_stalled(request, "an SSE client", self.write_timeout_s)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(queue)
        return response
