"""The dashboard against hostile clients, bad messages and a failing counter (issue 12).

Real dashboards on loopback, with their own small limits where a test needs them to act
sooner; the pieces with a clock (the login limiter, the live feed's input clock) are driven
by a fake one. Every load is bounded in count and time, and every socket is closed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from people_counter.dashboard.config import DashboardMqttConfig
from people_counter.dashboard.health import assess
from people_counter.dashboard.live import LiveFeed
from people_counter.dashboard.login_limit import FREE_FAILURES, LoginLimiter
from people_counter.outputs.frame_sink import FrameSink
from testsupport.live_stack import CounterPublisher, DashboardProcess, LivePair, MjpegViewer, http_get, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

needs_broker = pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto")
DEVICE = "test-device"
OTHER_ADDRESS = "127.0.0.2"  # loopback too: a second client address on this host


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if predicate():
                return True
        time.sleep(0.05)
    return False


def _request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    source: str = "127.0.0.1",
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request from the given source address (so that tests can be two clients)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _post_login(
    port: int, password: str, source: str = "127.0.0.1", origin: str | None = None
) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin is not None:
        headers["Origin"] = origin
    status, got, _ = _request(port, "POST", "/login", headers, "password=" + password, source)
    return status, got


def _cookie(headers: dict[str, str]) -> str:
    return headers.get("set-cookie", "").split(";", 1)[0]


def _log_lines(dash: DashboardProcess) -> list[str]:
    return [line for line in dash.log().splitlines() if line.strip()]


@pytest.fixture
def dash() -> Iterator[DashboardProcess]:
    """A dashboard with no broker (health says stale; that is not what these tests look at)."""
    with short_tmp() as run, DashboardProcess(run, None, run / "none.sock") as d:
        yield d


# -- hostile connections ----------------------------------------------------------------------


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _still_open(sock: socket.socket) -> bool:
    """True while the server keeps the connection (nothing to read, no EOF, no reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if want < 2000:
        pytest.skip(f"needs 2000 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


ATTACK_CONNECTIONS = 1500


def test_half_open_requests_from_one_address_leave_healthz_to_others(many_fds: None) -> None:
    """The issue's slowloris: 1,500 half-sent requests from 127.0.0.1, /healthz asked from 127.0.0.2."""
    import psutil

    limits = {"request_head_timeout_s": 3, "max_connections_per_address": 32}
    with short_tmp() as run, DashboardProcess(run, None, run / "none.sock", extra={"limits": limits}) as dash:
        # The file-descriptor limit the device had, where ~1,100 such requests took it down.
        psutil.Process(dash.pid).rlimit(psutil.RLIMIT_NOFILE, (1024, 1024))
        lines_before = len(_log_lines(dash))
        peak_fds = [_open_fds(dash.pid)]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                with contextlib.suppress(OSError):
                    peak_fds.append(_open_fds(dash.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        attack: list[socket.socket] = []
        try:
            for _ in range(ATTACK_CONNECTIONS):
                sock = socket.socket()
                attack.append(sock)
                sock.settimeout(5)
                sock.connect(("127.0.0.1", dash.port))
                with contextlib.suppress(OSError):  # refused ones may be reset before this
                    sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            # Meanwhile another address is served; the socket's timeout is the 1 s bound.
            status, _, body = _request(dash.port, "GET", "/healthz", source=OTHER_ADDRESS, timeout=1.0)
            assert status in (200, 503) and b"status" in body
            # The server kept only the per-address cap of them, and closes those at the head timeout.
            assert _wait(lambda: sum(_still_open(s) for s in attack) <= 32, 10)
            assert _wait(lambda: not any(_still_open(s) for s in attack), 15)
        finally:
            for sock in attack:
                sock.close()
            sampling.set()
            sampler.join()
        # The address gets its places back.
        assert _request(dash.port, "GET", "/healthz")[0] in (200, 503)
        attack_lines = _log_lines(dash)[lines_before:]
        assert len(attack_lines) < 100, attack_lines
        assert not any("Traceback" in line for line in attack_lines)
        print(f"\ndashboard fds: peak {max(peak_fds)} during {ATTACK_CONNECTIONS} half-open connections")
        print(f"log lines for the attack: {len(attack_lines)}")


def test_bad_requests_get_one_line_each_at_most(dash: DashboardProcess) -> None:
    bad = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",  # over aiohttp's 8190
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    ]
    statuses = []
    for i in range(60):
        with socket.create_connection(("127.0.0.1", dash.port), timeout=5) as sock:
            sock.sendall(bad[i % len(bad)])
            answer = sock.recv(4096)
            statuses.append(int(answer.split()[1]))
            assert b"aiohttp" not in answer and b"Python" not in answer, answer
    assert set(statuses) == {400}
    # A head larger than the guard's limit is refused before aiohttp reads it.
    with socket.create_connection(("127.0.0.1", dash.port), timeout=5) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 40_000)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 ")
    lines = _log_lines(dash)
    assert "Traceback" not in dash.log()
    assert len([line for line in lines if "Error handling request" in line]) <= 10, lines


def test_a_stalled_viewer_loses_its_place(broker: MosquittoBroker) -> None:
    import numpy as np

    with (
        short_tmp() as run,
        LivePair(run, broker, width=640, extra={"max_viewers": 1, "limits": {"write_timeout_s": 1}}) as pair,
    ):
        cookie = pair.login()
        sink = FrameSink(pair.frame_socket, 20.0)
        done = threading.Event()

        rng = np.random.default_rng(7)

        def feed() -> None:
            end = time.monotonic() + 60
            i = 0
            while not done.is_set() and time.monotonic() < end:
                i += 1
                # Noise: large JPEGs, so that the stalled viewer's socket buffers fill in a second or two.
                sink.offer(rng.integers(0, 255, (480, 640, 3), np.uint8))
                time.sleep(0.05)

        feeder = threading.Thread(target=feed)
        feeder.start()
        stalled = MjpegViewer(pair.url, cookie, read=False)
        viewer = None
        try:
            assert _wait(lambda: json.loads(pair.get("/api/state", cookie)[2])["encoder"]["viewers"] == 1, 10)
            # The stalled viewer holds the only place until its writes time out; then a reader gets in.
            assert _wait(lambda: json.loads(pair.get("/api/state", cookie)[2])["encoder"]["viewers"] == 0, 30)
            viewer = MjpegViewer(pair.url, cookie)
            assert _wait(lambda: len(viewer.received) >= 5, 10)
        finally:
            done.set()
            feeder.join()
            sink.close()
            stalled.close()
            if viewer is not None:
                viewer.close()
        assert "dropped a video viewer" in pair.dashboard.log()


@needs_broker
def test_a_stalled_sse_client_is_dropped(broker: MosquittoBroker) -> None:
    extra = {"limits": {"write_timeout_s": 1}}
    with (
        short_tmp() as run,
        DashboardProcess(run, broker, run / "none.sock", device_id=DEVICE, extra=extra) as dash,
        CounterPublisher(broker, DEVICE) as counter,
    ):
        _, cookie = dash.login()
        stalled = socket.create_connection(("127.0.0.1", dash.port), timeout=5)
        try:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
            # Big states (under max_message_bytes), each pushed to the client that never reads.
            pad = "x" * 60_000
            for i in range(300):
                counter.state(count=i, pad=pad)
                if "dropped an SSE client" in dash.log():
                    break
            assert _wait(lambda: "dropped an SSE client" in dash.log(), 10)
        finally:
            stalled.close()


# -- login and sessions -------------------------------------------------------------------------


def test_login_limiter_slows_one_address_only() -> None:
    now = [1000.0]
    limiter = LoginLimiter(clock=lambda: now[0])
    for _ in range(FREE_FAILURES):
        assert limiter.attempt("10.0.0.9") == 0  # the free tries, all at once
    assert limiter.attempt("10.0.0.9") == 1  # then one try per second at most
    assert limiter.attempt("10.0.0.66") == 0  # another address is not slowed
    now[0] += 1.0
    assert limiter.attempt("10.0.0.9") == 0  # the sixth try, a second later
    assert limiter.attempt("10.0.0.9") == 2  # and the delay doubles
    now[0] += 2.0
    assert limiter.attempt("10.0.0.9") == 0
    assert limiter.attempt("10.0.0.9") == 4
    now[0] += 4.0
    assert limiter.attempt("10.0.0.9") == 0
    limiter.succeeded("10.0.0.9")  # the right password clears the record
    assert limiter.attempt("10.0.0.9") == 0


def test_guessing_gets_429_while_the_right_password_gets_in_from_elsewhere(dash: DashboardProcess) -> None:
    for _ in range(FREE_FAILURES):
        assert _post_login(dash.port, "wrong")[0] == 401
    status, headers = _post_login(dash.port, "wrong")
    assert status == 429 and int(headers["retry-after"]) >= 1
    # Even the right password waits its turn from the guessing address...
    assert _post_login(dash.port, dash.password)[0] == 429
    # ...but not from another one.
    status, headers = _post_login(dash.port, dash.password, source=OTHER_ADDRESS)
    assert status == 303 and _cookie(headers).startswith("pc_session=")


def test_logout_ends_the_session_on_the_server_even_after_a_restart() -> None:
    with short_tmp() as run:
        # Each start is a new process on a new port, with the same state directory (run).
        with DashboardProcess(run, None, run / "none.sock") as dash:
            _, cookie = dash.login()
            _, other = dash.login()
            assert http_get(dash.url + "/api/state", cookie)[0] == 200
            status, _, _ = _request(dash.port, "POST", "/logout", {"Cookie": cookie})
            assert status == 303
            assert http_get(dash.url + "/api/state", cookie)[0] == 401  # at once
            assert http_get(dash.url + "/api/state", other)[0] == 200  # only that session ended
        with DashboardProcess(run, None, run / "none.sock") as dash:
            assert http_get(dash.url + "/api/state", cookie)[0] == 401
            assert http_get(dash.url + "/api/state", other)[0] == 200
        # A new password ends every session.
        with DashboardProcess(run, None, run / "none.sock", password="another-one") as dash:
            assert http_get(dash.url + "/api/state", other)[0] == 401
            assert dash.login()[0] == 303


def test_a_login_form_that_never_arrives_gets_408() -> None:
    limits = {"limits": {"body_timeout_s": 1}}
    with (
        short_tmp() as run,
        DashboardProcess(run, None, run / "none.sock", extra=limits) as dash,
        socket.create_connection(("127.0.0.1", dash.port), timeout=10) as sock,
    ):
        head = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall(f"{head}Content-Length: 100\r\n\r\npassword=".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")


def test_the_redirect_port_needs_tls() -> None:
    from people_counter.config import validate_document
    from people_counter.dashboard.config import DashboardConfig
    from people_counter.errors import ConfigError

    document: dict[str, Any] = {"auth": {"password_hash": "scrypt$1$1$1$a$b"}, "listen": {"redirect_http_port": 80}}
    with pytest.raises(ConfigError, match="redirect_http_port needs tls"):
        validate_document(DashboardConfig, document, "dashboard.yml")
    document["tls"] = {"cert_file": "/c.pem", "key_file": "/k.pem"}
    assert validate_document(DashboardConfig, document, "dashboard.yml").listen.redirect_http_port == 80


def test_cross_origin_posts_are_refused(dash: DashboardProcess) -> None:
    own = f"http://127.0.0.1:{dash.port}"
    assert _post_login(dash.port, dash.password, origin="http://evil.example")[0] == 403
    assert _post_login(dash.port, dash.password, origin="null")[0] == 403
    status, headers = _post_login(dash.port, dash.password, origin=own)
    assert status == 303
    cookie = _cookie(headers)
    status, _, _ = _request(dash.port, "POST", "/logout", {"Cookie": cookie, "Origin": "http://evil.example"})
    assert status == 403
    assert http_get(dash.url + "/api/state", cookie)[0] == 200  # the forged logout did nothing


SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")


def test_security_headers_on_every_answer_and_no_version_banner(dash: DashboardProcess) -> None:
    _, cookie = dash.login()
    answers = {
        200: _request(dash.port, "GET", "/api/state", {"Cookie": cookie}),
        401: _request(dash.port, "GET", "/api/state"),
        403: _request(dash.port, "POST", "/login", {"Origin": "http://evil.example"}, "password=x"),
        404: _request(dash.port, "GET", "/no-such-page", {"Cookie": cookie}),
    }
    for _ in range(FREE_FAILURES):
        _post_login(dash.port, "wrong")
    answers[429] = _request(
        dash.port, "POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, "password=x"
    )
    for status, (got, headers, _) in answers.items():
        assert got == status
        assert all(name in headers for name in SECURITY_HEADERS), (status, headers)
        assert headers["server"] == "people-counter", (status, headers["server"])


# -- HTTPS --------------------------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_with_a_plain_http_port_that_only_redirects() -> None:
    from testsupport.helpers import free_port

    with short_tmp() as run:
        cert, key = _self_signed(run)
        redirect_port = free_port()
        extra = {
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "listen": {"host": "127.0.0.1", "redirect_http_port": redirect_port},
            "limits": {"request_head_timeout_s": 2, "max_connections_per_address": 4},
        }
        dash = DashboardProcess(run, None, run / "none.sock", extra=extra)
        config = yaml.safe_load(dash.config_path.read_text())
        config["listen"]["port"] = dash.port
        dash.config_path.write_text(yaml.safe_dump(config))
        dash._spawn([sys.executable, "-m", "people_counter.dashboard.cli", "-c", str(dash.config_path)])
        try:
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False

            def https(method: str, path: str, **kw: Any) -> tuple[int, str]:
                """(status, Set-Cookie); the connection is closed, so as not to hold a place."""
                conn = http.client.HTTPSConnection("127.0.0.1", dash.port, context=context, timeout=5)
                try:
                    conn.request(method, path, **kw)
                    response = conn.getresponse()
                    response.read()
                    return response.status, response.getheader("Set-Cookie") or ""
                finally:
                    conn.close()

            assert _wait(lambda: https("GET", "/healthz")[0] in (200, 503), 15), dash.log()
            status, set_cookie = https(
                "POST",
                "/login",
                body="password=" + dash.password,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 303
            flags = {p.strip().lower() for p in set_cookie.split(";")[1:]}
            assert {"secure", "httponly", "samesite=strict"} <= flags
            # Over TLS, the page's own origin is https://...: its POSTs pass the Origin check.
            own = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://127.0.0.1:{dash.port}"}
            assert https("POST", "/login", body="password=" + dash.password, headers=own)[0] == 303
            own["Origin"] = f"http://127.0.0.1:{dash.port}"
            assert https("POST", "/login", body="password=" + dash.password, headers=own)[0] == 403
            # Plain HTTP only redirects, to the same path on HTTPS.
            status, headers, _ = _request(redirect_port, "GET", "/api/history?range=day")
            assert status == 308
            assert headers["location"] == f"https://127.0.0.1:{dash.port}/api/history?range=day"
            # Plain HTTP on the HTTPS port is no request: the handshake fails and the connection closes.
            with pytest.raises((OSError, http.client.HTTPException)):
                _request(dash.port, "GET", "/healthz")
            # The per-address cap holds before the TLS handshake too, and a silent connection is
            # closed at the head timeout.
            silent = [socket.create_connection(("127.0.0.1", dash.port), timeout=5) for _ in range(8)]
            try:
                assert _wait(lambda: sum(_still_open(s) for s in silent) <= 4, 5)
                assert _wait(lambda: not any(_still_open(s) for s in silent), 10)
            finally:
                for sock in silent:
                    sock.close()
            assert https("GET", "/healthz")[0] in (200, 503)
        finally:
            dash.stop()
        assert "Traceback" not in dash.log()


def test_version() -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "people_counter.dashboard.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"people-counter-dashboard {version('people-counter')}"


# -- health -------------------------------------------------------------------------------------


def test_health_rules() -> None:
    fresh = {"input": "ok", "store": "ok", "input_down_s": 0.0}
    assert assess(fresh, 1.0, 10, None, 10).status == "ok"
    assert assess({}, 1.0, 10, None, 10).status == "ok"  # an older counter: fields unknown, not failed
    assert assess(fresh, None, 10, None, 10).status == "stale"
    assert assess(fresh, 11.0, 10, None, 10).status == "stale"
    down = assess({**fresh, "input": "reconnecting", "input_down_s": 12.5}, 1.0, 10, None, 10)
    assert down.status == "degraded" and "input down for 12 s" in down.problems[0]
    assert assess({**fresh, "input": "reconnecting", "input_down_s": 9.0}, 1.0, 10, None, 10).ok
    # Without input_down_s, the dashboard's own clock of "input not ok" counts.
    assert assess({"input": "reconnecting"}, 1.0, 10, 10.5, 10).status == "degraded"
    store = assess({**fresh, "store": "degraded"}, 1.0, 10, None, 10)
    assert store.status == "degraded" and "store degraded" in store.problems[0]


def test_live_feed_clocks_the_input_down_itself() -> None:
    now = [50.0]
    feed = LiveFeed(DashboardMqttConfig(device_id=DEVICE), 10.0, clock=lambda: now[0])
    topic = f"people_counter/{DEVICE}/state"
    feed._apply(topic, json.dumps({"input": "reconnecting"}).encode())
    now[0] += 4
    feed._apply(topic, json.dumps({"input": "reconnecting"}).encode())
    now[0] += 7
    assert feed.input_not_ok_for_s() == 11
    feed._apply(topic, json.dumps({"input": "ok"}).encode())
    assert feed.input_not_ok_for_s() is None


def test_live_feed_keeps_alerts_bounded_in_bytes() -> None:
    feed = LiveFeed(DashboardMqttConfig(device_id=DEVICE), 10.0)
    topic = f"people_counter/{DEVICE}/alert"
    big = {"type": "occupancy", "value": 1, "note": "x" * 10_000}
    for _ in range(40):
        feed._apply(topic, json.dumps(big).encode())
    # 40 alerts are under the count limit (50), not under the bytes limit (64 KiB).
    assert len(json.dumps(list(feed.alerts))) <= 64 * 1024
    assert 5 <= len(feed.alerts) < 10


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    if not mosquitto_available():
        pytest.skip("needs mosquitto")
    with MosquittoBroker() as b:
        yield b


@needs_broker
def test_healthz_is_503_while_the_input_is_down_or_the_store_degraded(broker: MosquittoBroker) -> None:
    with (
        short_tmp() as run,
        DashboardProcess(run, broker, run / "none.sock", device_id=DEVICE) as dash,
        CounterPublisher(broker, DEVICE) as counter,
    ):

        def health() -> tuple[int, dict[str, Any]]:
            status, _, body = http_get(dash.url + "/healthz")
            return status, json.loads(body)

        counter.state(input="ok", store="ok", input_down_s=0.0)
        assert _wait(lambda: health()[0] == 200, 10)
        counter.state(input="reconnecting", store="ok", input_down_s=12.0)
        assert _wait(lambda: health()[0] == 503, 10)
        body = health()[1]
        assert body["status"] == "degraded" and body["input_down_s"] == 12.0
        assert any("input down" in p for p in body["problems"])
        counter.state(input="ok", store="degraded", input_down_s=0.0)
        assert _wait(lambda: any("store" in p for p in health()[1]["problems"]), 10)
        assert health()[0] == 503
        counter.state()  # an older counter: neither field
        assert _wait(lambda: health()[0] == 200, 10)


@needs_broker
def test_oversized_and_malformed_messages_are_ignored(broker: MosquittoBroker) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    with (
        short_tmp() as run,
        DashboardProcess(run, broker, run / "none.sock", device_id=DEVICE) as dash,
        CounterPublisher(broker, DEVICE) as counter,
    ):
        _, cookie = dash.login()
        counter.state()
        assert _wait(lambda: http_get(dash.url + "/healthz")[0] == 200, 10)
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.username_pw_set("counter", "counterpw")
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            topic = f"people_counter/{DEVICE}/alert"
            huge = json.dumps({"type": "occupancy", "value": 1, "ts": time.time(), "pad": "x" * 1_000_000})
            for payload in (huge, "not json", "[1, 2]"):
                client.publish(topic, payload, qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
        counter.alert("loitering", 75, 60)  # after them, a good one still gets through
        assert _wait(lambda: json.loads(http_get(dash.url + "/api/alerts", cookie)[2])[:1] != [], 10)
        status, _, body = http_get(dash.url + "/api/alerts", cookie)
        alerts = json.loads(body)
        assert status == 200 and len(body) < 10_000
        assert [a["type"] for a in alerts] == ["loitering"]
        log = dash.log()
        assert "over max_message_bytes" in log and "not JSON" in log and "not a JSON object" in log
        assert "Traceback" not in log
