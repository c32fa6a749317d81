"""Start the real stream encoder and dashboard as child processes, for tests and the benchmark.

    with short_tmp() as run, MosquittoBroker() as broker, LivePair(run, broker) as pair:
        sink = FrameSink(pair.frame_socket, 10)        # or a real counter with pair.counter_stream_config()
        cookie = pair.login()                          # "pc_session=..."
        pair.get("/api/state", cookie)

Every process is stopped by its own PID when the context ends.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml

from people_counter.contract import DEFAULT_TOPIC_PREFIX, DeviceTopics
from people_counter.dashboard.passwords import hash_password
from testsupport.helpers import free_port, wait_first

DEFAULT_PASSWORD = "letmein-test"
_STARTUP_S = 15.0


class BrokerLike(Protocol):
    host: str
    port: int


def pinned_ffmpeg() -> Path:
    """The pinned build from the cache, fetched on first use (the same binary devices run)."""
    from people_counter.prepare.ffmpeg import ensure_ffmpeg

    return ensure_ffmpeg()


@contextlib.contextmanager
def short_tmp(prefix: str = "pc-") -> Iterator[Path]:
    """A short directory under /tmp: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _Child:
    """A child process with a log file, stopped by its own PID."""

    name = "child"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_path = run_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, **(env or {})}
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            # A SIGSTOPped child would never see SIGTERM: continue it first.
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class StreamProcess(_Child):
    """people-counter-stream, with a config of its own or the counter's config file."""

    name = "stream"

    def __init__(
        self,
        run_dir: Path,
        ffmpeg: Path | None = None,
        width: int = 768,
        fps: float = 10.0,
        quality: int = 5,
        config_path: Path | None = None,
    ) -> None:
        super().__init__(run_dir)
        self.ffmpeg = ffmpeg or pinned_ffmpeg()
        if config_path is None:
            config_path = run_dir / "stream.yml"
            config_path.write_text(yaml.safe_dump({"stream": self.stream_section(run_dir, width, fps, quality)}))
        self.config_path = config_path
        stream = yaml.safe_load(config_path.read_text()).get("stream", {})
        self.frame_socket = Path(stream.get("socket_path", "/run/people-counter/frames.sock"))
        self.jpeg_socket = Path(stream.get("jpeg_socket_path", "/run/people-counter/mjpeg.sock"))

    @staticmethod
    def stream_section(run_dir: Path, width: int = 768, fps: float = 10.0, quality: int = 5) -> dict[str, Any]:
        """The `stream:` section for a counter config that shares these sockets."""
        return {
            "socket_path": str(run_dir / "frames.sock"),
            "jpeg_socket_path": str(run_dir / "mjpeg.sock"),
            "width": width,
            "fps": fps,
            "quality": quality,
        }

    def start(self) -> StreamProcess:
        self._spawn(
            [sys.executable, "-m", "people_counter.encoder.ffmpeg_encoder", "-c", str(self.config_path)],
            {"PEOPLE_COUNTER_FFMPEG": str(self.ffmpeg)},
        )
        deadline = time.monotonic() + _STARTUP_S
        while not self.jpeg_socket.exists():
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"people-counter-stream did not start:\n{self.log()}")
            time.sleep(0.02)
        return self

    def __enter__(self) -> StreamProcess:
        return self.start()


class DashboardProcess(_Child):
    """people-counter-dashboard on a free loopback port, reading the given broker and sockets."""

    name = "dashboard"

    def __init__(
        self,
        run_dir: Path,
        broker: BrokerLike | None,
        jpeg_socket: Path,
        database: Path | None = None,
        device_id: str = "test-device",
        password: str = DEFAULT_PASSWORD,
        mqtt_user: str = "dashboard",
        mqtt_password: str = "dashpw",
        stale_after_s: float = 10.0,
        port: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(run_dir)
        self.password = password
        self.port = port or free_port()
        scheme = "https" if "tls" in (extra or {}) else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        pw_file = run_dir / "dashboard-mqtt.pw"
        pw_file.write_text(mqtt_password + "\n")
        pw_file.chmod(0o600)
        config: dict[str, Any] = {
            "listen": {"host": "127.0.0.1", "port": self.port},
            # A fixed salt keeps test start-up fast and repeatable; devices use a random one.
            "auth": {
                "password_hash": hash_password(password, b"test-salt-fixed!"),
                "session_secret_file": str(run_dir / "session.key"),
            },
            "mqtt": {
                "host": broker.host if broker else "127.0.0.1",
                "port": broker.port if broker else free_port(),
                "username": mqtt_user,
                "password_file": str(pw_file),
                "device_id": device_id,
            },
            "database": str(database or run_dir / "counts.sqlite3"),
            "jpeg_socket": str(jpeg_socket),
            "stale_after_s": stale_after_s,
            **(extra or {}),
        }
        self.config_path = run_dir / "dashboard.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> DashboardProcess:
        self._spawn([sys.executable, "-m", "people_counter.dashboard.cli", "-c", str(self.config_path)])
        deadline = time.monotonic() + _STARTUP_S
        while True:
            try:
                status, _, _ = http_get(self.url + "/healthz")
                if status in (200, 503):
                    return self
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"people-counter-dashboard did not start:\n{self.log()}")
            time.sleep(0.05)

    def __enter__(self) -> DashboardProcess:
        return self.start()

    def login(self, password: str | None = None) -> tuple[int, str]:
        """POST the login form; returns (status, "pc_session=..." or "")."""
        return login(self.url, self.password if password is None else password)


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """To the URL's host; over TLS for https, trusting the test's own self-signed certificate."""
    host = url.split("/", 3)[2]
    if url.startswith("https://"):
        return http.client.HTTPSConnection(host, timeout=timeout, context=ssl._create_unverified_context())
    return http.client.HTTPConnection(host, timeout=timeout)


def http_get(url: str, cookie: str = "", timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    parsed = url.split("/", 3)
    path = "/" + (parsed[3] if len(parsed) > 3 else "")
    conn = _connection(url, timeout)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def login(url: str, password: str) -> tuple[int, str]:
    conn = _connection(url, 10)
    try:
        body = "password=" + password
        conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie") or ""
        return response.status, cookie.split(";", 1)[0] if cookie else ""
    finally:
        conn.close()


class LivePair:
    """The stream encoder and the dashboard together, wired by sockets in run_dir."""

    def __init__(self, run_dir: Path, broker: BrokerLike | None, **dashboard: Any) -> None:
        stream_opts = {
            k: dashboard.pop(k) for k in ("ffmpeg", "width", "fps", "quality", "config_path") if k in dashboard
        }
        self.stream = StreamProcess(run_dir, **stream_opts)
        self.dashboard = DashboardProcess(run_dir, broker, self.stream.jpeg_socket, **dashboard)

    @property
    def frame_socket(self) -> Path:
        return self.stream.frame_socket

    @property
    def url(self) -> str:
        return self.dashboard.url

    def login(self, password: str | None = None) -> str:
        status, cookie = self.dashboard.login(password)
        if status != 303 or not cookie:
            raise RuntimeError(f"login failed with HTTP {status}")
        return cookie

    def get(self, path: str, cookie: str = "") -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, cookie)

    def __enter__(self) -> LivePair:
        self.dashboard.start()
        try:
            self.stream.start()
        except BaseException:
            self.dashboard.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.stop()
        self.dashboard.stop()


def state_message(**figures: Any) -> dict[str, Any]:
    """A `state` payload as the counter publishes it (DESIGN.md), with figures overridden."""
    message: dict[str, Any] = {
        "count": 0,
        "total": 0,
        "in": 0,
        "out": 0,
        "avg_duration_s": 0.0,
        "fps": 10.0,
        "inference_ms": 8.0,
        "dropped_frames": 0,
        "input": "ok",
        "uptime_s": 60.0,
        "ts": time.time(),
        "privacy_blur": True,
    }
    message.update(figures)
    return message


class CounterPublisher:
    """Publishes what the counter would, as the broker's `counter` user: for tests without a counter."""

    def __init__(
        self,
        broker: BrokerLike,
        device_id: str = "test-device",
        username: str = "counter",
        password: str = "counterpw",
        prefix: str = DEFAULT_TOPIC_PREFIX,
    ) -> None:
        import json
        import uuid

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._json = json
        self.topics = DeviceTopics(prefix, device_id)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-counter-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set(username, password)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def _publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        data = payload if isinstance(payload, str) else self._json.dumps(payload)
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)

    def state(self, **figures: Any) -> dict[str, Any]:
        message = state_message(**figures)
        self._publish(self.topics.state, message, retain=True)
        return message

    def alert(self, type_: str = "occupancy", value: float = 12, threshold: float = 10) -> dict[str, Any]:
        message = {"type": type_, "value": value, "threshold": threshold, "ts": time.time()}
        self._publish(self.topics.alert, message)
        return message

    def available(self, value: str = "online") -> None:
        self._publish(self.topics.available, value, retain=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> CounterPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MjpegViewer:
    """An HTTP client of /video.mjpg in its own thread, recording each part's arrival.

    `received` holds (X-Frame-Seq, X-Frame-Ts, arrival time.time(), JPEG bytes length).
    With read=False it connects and then never reads: a stalled viewer.
    """

    def __init__(self, url: str, cookie: str, read: bool = True, keep_jpegs: bool = False) -> None:
        import threading

        self.received: list[tuple[int, float, float, int]] = []
        self.jpegs: list[bytes] = []
        self.keep_jpegs = keep_jpegs
        self.status = 0
        self.error = ""
        host = url.split("/", 3)[2]
        name, port = host.rsplit(":", 1)
        self.sock = socket.create_connection((name, int(port)))
        # A small receive buffer makes a stalled viewer's backlog show up quickly on the server.
        if not read:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.sendall(f"GET /video.mjpg HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
        self._stop = False
        self.thread = threading.Thread(target=self._read, daemon=True) if read else None
        if self.thread is not None:
            self.thread.start()

    def _read(self) -> None:
        stream = self.sock.makefile("rb")
        try:
            status_line = stream.readline().decode()
            self.status = int(status_line.split()[1])
            while stream.readline() not in (b"\r\n", b""):
                pass  # response headers
            if self.status != 200:
                return
            while not self._stop:
                headers: dict[str, str] = {}
                line = stream.readline()
                if not line:
                    return
                if line.strip() in (b"", b"--frame"):
                    if line.strip() == b"":
                        continue
                    while (line := stream.readline()) not in (b"\r\n", b""):
                        key, _, value = line.decode().partition(":")
                        headers[key.strip().lower()] = value.strip()
                    body = stream.read(int(headers["content-length"]))
                    arrived = time.time()
                    self.received.append(
                        (int(headers.get("x-frame-seq", 0)), float(headers.get("x-frame-ts", 0)), arrived, len(body))
                    )
                    if self.keep_jpegs:
                        self.jpegs.append(body)
        except (OSError, ValueError) as error:
            self.error = str(error)

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)


class SseClient:
    """Reads /events in a thread; `events` holds (event name, parsed JSON data, arrival time)."""

    def __init__(self, url: str, cookie: str) -> None:
        import json
        import threading

        self._json = json
        self.events: list[tuple[str, Any, float]] = []
        self._cond = threading.Condition()
        host = url.split("/", 3)[2]
        self.conn = http.client.HTTPConnection(host, timeout=30)
        self.conn.request("GET", "/events", headers={"Cookie": cookie})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event, data = "message", ""
        try:
            while line := self.response.readline():
                text = line.decode().rstrip("\n")
                if text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:"):
                    data += text[5:].strip()
                elif not text and data:
                    with self._cond:
                        self.events.append((event, self._json.loads(data), time.time()))
                        self._cond.notify_all()
                    event, data = "message", ""
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close(): http.client may fail on a socket shut down under it

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> tuple[str, Any, float] | None:
        """The first event (already received or arriving in time) for which predicate(name, data) holds."""
        return wait_first(self._cond, self.events, lambda item: bool(predicate(item[0], item[1])), timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.thread.join(5)


def populate_history(state_dir: Path, hours: float = 24.0, alerts: int = 2) -> Path:
    """Fill a fresh counter store with plausible per-minute history ending now; returns the database path.

    Waves with noise, for the charts in tests, screenshots and demos.
    """
    import math
    import random

    from people_counter.outputs.store import CountStore
    from people_counter.stage_data import Alert, CountingResult, PersonEvent, Totals

    rng = random.Random(42)
    store = CountStore(state_dir)
    totals = Totals()
    now = time.time()
    minutes = int(hours * 60)
    track = 0
    for m in range(minutes, 0, -1):
        ts = now - m * 60
        # Waves of visitors over the day and within the hour, so every range has shape.
        busy = 0.5 + 0.3 * math.sin(m / 229) + 0.2 * math.sin(m / 17)
        level = busy * 6 + rng.random() * 1.5
        for k in range(6):  # six samples a minute are enough for the mean and the peak
            store.note_count(max(0, round(level + rng.gauss(0, 0.8))), ts + k * 10)
        events = []
        for _ in range(int(busy * 3 + rng.random() * 1.5)):
            track += 1
            events.append(PersonEvent("enter", track, ts + 5))
        totals.total += len(events)
        store.record(totals, CountingResult(events=tuple(events)), round(level), ts + 5, track)
    for i in range(alerts):
        ts = now - (i + 1) * 1800
        alert = Alert("occupancy", 12, 10, ts) if i % 2 == 0 else Alert("loitering", 95, 60, ts, track)
        store.record(totals, CountingResult(alerts=(alert,)), 12, ts, track)
    store.flush(now)
    path = store.path
    store.close()
    return Path(path)
