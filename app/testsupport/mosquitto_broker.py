"""A real Mosquitto for tests and the benchmark, plus a subscriber that records what it receives.

The broker gets a loopback listener on a free port (and optionally a TLS one with a throw-away
CA), a password file, an ACL shaped like the appliance's (the counter writes under its prefix
and the compatibility topics, the dashboard only reads its prefix, the original UI's user only
reads the compatibility topics) and no persistence, so a restart loses retained messages just as a device's
broker without persistence would: that is what proves the publisher republishes its state.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from people_counter.contract import COMPAT_TOPICS, DEFAULT_DISCOVERY_PREFIX, DEFAULT_TOPIC_PREFIX
from testsupport.helpers import free_port, wait_first

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
DEFAULT_USERS: Mapping[str, str] = {"counter": "counterpw", "dashboard": "dashpw", "ui": "uipw", "ha": "hapw"}


def mosquitto_available() -> bool:
    return MOSQUITTO.exists() and Path(MOSQUITTO_PASSWD).exists()


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """Mosquitto on 127.0.0.1 with passwords and an ACL; start, stop, kill, start again on one port."""

    host = "127.0.0.1"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        devices: Iterable[str] = ("+",),
        counter_user: str = "counter",
        dashboard_user: str = "dashboard",
        compat_user: str = "ui",
        port: int | None = None,
        tls: bool = False,
        websockets: bool = False,
        acl_text: str | None = None,
    ) -> None:
        """`websockets` adds an MQTT-over-WebSockets listener (ws_port); `acl_text` replaces the ACL."""
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.topic_prefix = topic_prefix
        self.devices = tuple(devices)
        self.counter_user = counter_user
        self.dashboard_user = dashboard_user
        self.compat_user = compat_user
        self.port = port if port is not None else free_port()
        self.tls_port: int | None = free_port() if tls else None
        self.ws_port: int | None = free_port() if websockets else None
        self.acl_text = self._acl_text() if acl_text is None else acl_text
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-test-"))
        self.ca_file = self.dir / "ca.crt"
        """With tls=True: the CA that signed the broker's certificate (for 127.0.0.1 and localhost)."""
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_files()

    # -- files ---------------------------------------------------------------------------------

    def _write_files(self) -> None:
        passwd = self.dir / "passwd"
        passwd.touch(mode=0o600)
        for user, password in self.users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True)
        acl = self.dir / "acl"
        acl.write_text(self.acl_text, encoding="utf-8")
        # Mosquitto started as root drops to the user 'mosquitto', which could not read this
        # private temp dir; naming the current user keeps it as it is.
        run_as = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            "per_listener_settings false",
            f"user {run_as}",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {acl}",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if self.tls_port is not None:
            certfile, keyfile = self._make_certificates()
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.ca_file}",
                f"certfile {certfile}",
                f"keyfile {keyfile}",
            ]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} {self.host}", "protocol websockets"]
        self.conf_path.write_text("\n".join([*lines, ""]), encoding="utf-8")

    def _make_certificates(self) -> tuple[Path, Path]:
        """A throw-away CA and a server certificate for 127.0.0.1, made with the openssl command."""
        ca_key, key, csr, cert = (self.dir / n for n in ("ca.key", "server.key", "server.csr", "server.crt"))
        ext = self.dir / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        sign = ["-CA", self.ca_file, "-CAkey", ca_key, "-CAcreateserial", "-extfile", ext]
        commands = [
            ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca_file, "-subj", "/CN=test CA", *ca_ext],
            ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", csr, *sign, "-out", cert, "-days", "2"],
        ]
        for command in commands:
            subprocess.run([str(part) for part in command], check=True, capture_output=True)
        return cert, key

    def _acl_text(self) -> str:
        lines = [f"user {self.counter_user}"]
        lines += [f"topic readwrite {self.topic_prefix}/{device}/#" for device in self.devices]
        lines += [f"topic write {topic}" for topic in COMPAT_TOPICS]
        # Its own Home Assistant discovery configs (the role's rule, mqtt_topics.yml).
        lines += [f"topic readwrite {DEFAULT_DISCOVERY_PREFIX}/+/{device}/+/config" for device in self.devices]
        lines += ["", f"user {self.dashboard_user}", f"topic read {self.topic_prefix}/#", ""]
        # Home Assistant reads the discovery configs and the devices' topics.
        lines += ["user ha", f"topic read {DEFAULT_DISCOVERY_PREFIX}/#", f"topic read {self.topic_prefix}/#", ""]
        # The original UI's user reads only the compatibility topics.
        lines += [f"user {self.compat_user}"] + [f"topic read {topic}" for topic in COMPAT_TOPICS] + [""]
        return "\n".join(lines)

    # -- process -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 5.0) -> None:
        """Start Mosquitto on self.port and return once the port accepts connections."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        self._process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {err}{self.log()}")
            if all(_port_accepts(self.host, p) for p in (self.port, self.tls_port, self.ws_port) if p is not None):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} in {timeout_s} s\n{self.log()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to our own broker's PID, then wait; SIGKILL if it does not go."""
        self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL to our own broker's PID: the broker vanishes without a goodbye."""
        self._signal(signal.SIGKILL, 5.0)

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets open but answers nothing (a hung or half-open link)."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def _signal(self, sig: signal.Signals, timeout_s: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, sig)
            if sig != signal.SIGKILL:
                os.kill(process.pid, signal.SIGCONT)  # a paused broker must see the SIGTERM
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        self._process = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class MessageCollector:
    """A real MQTT subscriber that records every message, for assertions."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        topics: Iterable[str],
        ca_file: Path | None = None,
        transport: Literal["tcp", "websockets"] = "tcp",
    ) -> None:
        self.topics = list(topics)
        self.messages: list[ReceivedMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self._started = False
        client_id = f"collector-{uuid.uuid4().hex[:8]}"
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, transport=transport)
        self._client.username_pw_set(username, password)
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file))
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def start(self, timeout_s: float = 5.0) -> MessageCollector:
        if self._started:
            return self
        self._started = True
        self._client.connect(self._host, self._port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"collector did not subscribe in {timeout_s} s: {self._refused or 'no SUBACK'}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            return
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, _c: object, _u: object, _mid: object, _codes: object, _p: object) -> None:
        self._subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(ReceivedMessage(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def on_topic(self, topic: str) -> list[ReceivedMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[ReceivedMessage], bool], timeout_s: float = 30.0) -> ReceivedMessage | None:
        """The first message (already received or arriving within the timeout) that matches."""
        return wait_first(self._cond, self.messages, predicate, timeout_s)

    def wait_count(self, topic: str, n: int, timeout_s: float = 30.0) -> list[ReceivedMessage]:
        """Wait until at least n messages arrived on topic; returns those received (maybe fewer)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [m for m in self.messages if m.topic == topic]
                remaining = deadline - time.monotonic()
                if len(found) >= n or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def __enter__(self) -> MessageCollector:
        return self.start()  # a no-op when subscribe_collect() started it already

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def subscribe_collect(
    host: str,
    port: int,
    user: str,
    pw: str,
    topics: Iterable[str],
    timeout_s: float = 5.0,
    ca_file: Path | None = None,
) -> MessageCollector:
    """A started collector, subscribed (SUBACK received) to topics; stop() it when done."""
    return MessageCollector(host, port, user, pw, topics, ca_file).start(timeout_s)
