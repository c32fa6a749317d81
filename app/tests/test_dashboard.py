"""The dashboard with real pieces on loopback: Mosquitto, the stream encoder with the pinned ffmpeg."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from people_counter.dashboard.passwords import hash_password, verify_password
from people_counter.outputs.frame_sink import FrameSink
from testsupport.live_stack import (
    CounterPublisher,
    DashboardProcess,
    LivePair,
    MjpegViewer,
    SseClient,
    http_get,
    login,
    short_tmp,
)
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]

DEVICE = "test-device"


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b


@pytest.fixture(scope="module")
def pair(broker: MosquittoBroker) -> Iterator[LivePair]:
    # A long write timeout: test_mjpeg_fan_out_with_a_stalled_viewer's stalled viewer stays a viewer.
    extra = {"limits": {"write_timeout_s": 120}}
    with short_tmp() as run, LivePair(run, broker, device_id=DEVICE, width=640, stale_after_s=3.0, extra=extra) as p:
        yield p


@pytest.fixture(scope="module")
def cookie(pair: LivePair) -> str:
    return pair.login()


@pytest.fixture(scope="module")
def counter(broker: MosquittoBroker) -> Iterator[CounterPublisher]:
    with CounterPublisher(broker, DEVICE) as c:
        c.available("online")
        yield c


def feed_frames(sink: FrameSink, done: threading.Event, fps: float = 20.0, max_s: float = 60.0) -> None:
    """Offer frames at about `fps` until the test is done (at most max_s, should it fail to say so)."""
    import numpy as np

    end = time.monotonic() + max_s
    i = 0
    while not done.is_set() and time.monotonic() < end:
        i += 1
        frame = np.full((480, 640, 3), (i * 7) % 255, np.uint8)
        sink.offer(frame)
        time.sleep(1 / fps)


def test_password_hash_round_trip() -> None:
    encoded = hash_password("s3cret")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("S3cret", encoded)
    assert not verify_password("s3cret", "garbage")
    # A fixed salt gives the same hash twice (idempotent provisioning).
    assert hash_password("x", b"0123456789abcdef") == hash_password("x", b"0123456789abcdef")


def test_hash_password_command() -> None:
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "people_counter.dashboard.cli", "hash-password"],
        input="hunter2\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert verify_password("hunter2", proc.stdout.strip())


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import sys

    cfg = tmp_path / "d.yml"
    cfg.write_text("auth: {password_hash: 'scrypt$1$1$1$a$b'}\nlisten: {port: 99999}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "people_counter.dashboard.cli", "check-config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "listen.port" in proc.stderr and "Traceback" not in proc.stderr
    cfg.write_text("auth: {password_hash: 'x'}\nbogus: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "people_counter.dashboard.cli", "check-config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "bogus: unknown key" in proc.stderr


def test_login_required_and_cookie_flags(pair: LivePair) -> None:
    status, headers, _ = pair.get("/")
    assert status == 303 and headers["location"] == "/login"
    for path in ("/api/state", "/api/history", "/video.mjpg", "/events", "/snapshot.jpg", "/static/app.js"):
        assert pair.get(path)[0] == 401, path
    status, cookie = login(pair.url, "wrong")
    assert (status, cookie) == (401, "")
    status, cookie = login(pair.url, pair.dashboard.password)
    assert status == 303 and cookie.startswith("pc_session=")
    raw = _raw_set_cookie(pair.url, pair.dashboard.password)
    flags = {part.strip().lower() for part in raw.split(";")[1:]}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP here; see the HTTPS test
    assert pair.get("/api/state", cookie)[0] == 200
    assert pair.get("/", cookie)[0] == 200
    # A forged or tampered cookie is refused.
    assert pair.get("/api/state", cookie[:-2] + "00")[0] == 401
    # /healthz and /metrics need no login.
    assert pair.get("/healthz")[0] in (200, 503)
    assert pair.get("/metrics")[0] == 200


def _raw_set_cookie(url: str, password: str) -> str:
    import http.client

    conn = http.client.HTTPConnection(url.split("/", 3)[2], timeout=10)
    conn.request("POST", "/login", "password=" + password, {"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.getheader("Set-Cookie") or ""


def test_https_marks_the_cookie_secure(tmp_path: Path) -> None:
    import http.client
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    with short_tmp() as run:
        dash = DashboardProcess(run, None, run / "none.sock")
        import yaml

        cfg = yaml.safe_load(dash.config_path.read_text())
        cfg["tls"] = {"cert_file": str(cert), "key_file": str(key)}
        dash.config_path.write_text(yaml.safe_dump(cfg))
        dash._spawn([__import__("sys").executable, "-m", "people_counter.dashboard.cli", "-c", str(dash.config_path)])
        try:
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False
            deadline = time.monotonic() + 15
            while True:
                try:
                    conn = http.client.HTTPSConnection("127.0.0.1", dash.port, context=context, timeout=5)
                    conn.request(
                        "POST",
                        "/login",
                        "password=" + dash.password,
                        {"Content-Type": "application/x-www-form-urlencoded"},
                    )
                    response = conn.getresponse()
                    break
                except OSError:
                    assert time.monotonic() < deadline, dash.log()
                    time.sleep(0.1)
            assert response.status == 303
            flags = {p.strip().lower() for p in (response.getheader("Set-Cookie") or "").split(";")[1:]}
            assert "secure" in flags and "httponly" in flags and "samesite=strict" in flags
        finally:
            dash.stop()


def test_healthz_follows_state_freshness(pair: LivePair, counter: CounterPublisher) -> None:
    counter.state(count=3, total=10)
    assert _wait(lambda: pair.get("/healthz")[0] == 200, 5)
    body = json.loads(pair.get("/healthz")[2])
    assert body["status"] == "ok" and body["broker_connected"] is True
    # A state older than the limit (3 s in this dashboard's config) is stale: 503.
    counter.state(count=3, total=10, ts=time.time() - 60)
    assert _wait(lambda: pair.get("/healthz")[0] == 503, 5)
    assert json.loads(pair.get("/healthz")[2])["status"] == "stale"
    counter.state(count=3, total=10)
    assert _wait(lambda: pair.get("/healthz")[0] == 200, 5)


def test_sse_pushes_state_and_alerts_from_mosquitto(pair: LivePair, cookie: str, counter: CounterPublisher) -> None:
    sse = SseClient(pair.url, cookie)
    try:
        assert sse.status == 200
        assert sse.wait_for(lambda name, _data: name == "snapshot", 5)
        counter.state(count=17, total=99)
        # Pushed as it arrives (the timeout is for failing only, not a window the push must meet).
        got = sse.wait_for(lambda name, data: name == "snapshot" and data["state"].get("count") == 17, 10)
        assert got is not None
        assert got[1]["state"]["total"] == 99 and got[1]["fresh"] is True
        counter.alert("loitering", 75, 60)
        alert = sse.wait_for(lambda name, data: name == "alert" and data["type"] == "loitering", 5)
        assert alert is not None and alert[1]["value"] == 75
        status, _, body = pair.get("/api/alerts", cookie)
        assert status == 200 and json.loads(body)[0]["type"] == "loitering"
    finally:
        sse.close()


def test_mjpeg_fan_out_with_a_stalled_viewer(pair: LivePair, cookie: str) -> None:
    sink = FrameSink(pair.frame_socket, 20.0)
    done = threading.Event()
    feeder = threading.Thread(target=feed_frames, args=(sink, done))
    feeder.start()
    viewers: list[MjpegViewer] = []
    stalled = None
    try:
        assert _wait(lambda: json.loads(pair.get("/api/state", cookie)[2])["encoder"]["video"], 10)
        stalled = MjpegViewer(pair.url, cookie, read=False)
        viewers = [MjpegViewer(pair.url, cookie) for _ in range(4)]
        # Every live viewer gets frames, whatever the stalled one does: 30 each (1.5 s of the feed).
        assert _wait(lambda: min(len(v.received) for v in viewers) >= 30, 30), [len(v.received) for v in viewers]
        for v in viewers:
            seqs = [r[0] for r in v.received]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # One viewer leaves mid-stream; the others keep going; no error is logged.
        viewers[0].close()
        before = [len(v.received) for v in viewers[1:]]
        assert _wait(lambda: all(len(v.received) > b + 10 for v, b in zip(viewers[1:], before, strict=True)), 30)
        assert json.loads(pair.get("/api/state", cookie)[2])["encoder"]["viewers"] == 5 - 1
    finally:
        done.set()
        feeder.join()
        sink.close()
        for v in viewers:
            v.close()
        if stalled is not None:
            stalled.close()
    log = pair.dashboard.log()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_video_unavailable_while_figures_stay_live(broker: MosquittoBroker, counter: CounterPublisher) -> None:
    with short_tmp() as run, LivePair(run, broker, device_id=DEVICE, width=640) as p:
        cookie = p.login()
        sse = SseClient(p.url, cookie)
        try:
            p.stream.stop()
            got = sse.wait_for(lambda n, d: n == "snapshot" and d["encoder"]["state"] == "down", 5)
            assert got is not None and got[1]["encoder"]["video"] is False
            counter.state(count=5, total=42)
            assert sse.wait_for(lambda n, d: n == "snapshot" and d["state"].get("total") == 42, 3)
            assert p.get("/snapshot.jpg", cookie)[0] == 503
        finally:
            sse.close()


def test_stale_when_the_broker_stops(broker: MosquittoBroker, pair: LivePair, cookie: str) -> None:
    with CounterPublisher(broker, DEVICE) as c:
        c.state(count=2)
    sse = SseClient(pair.url, cookie)
    try:
        assert sse.wait_for(lambda n, d: n == "snapshot" and d["broker"]["connected"] and d["fresh"], 5)
        broker.stop()
        got = sse.wait_for(lambda n, d: n == "snapshot" and not d["broker"]["connected"], 5)
        assert got is not None
        # The state ages past the limit: /healthz says so, figures stay visible but stale.
        assert _wait(lambda: pair.get("/healthz")[0] == 503, 6)
    finally:
        sse.close()
        broker.start()
    assert _wait(lambda: json.loads(pair.get("/api/state", cookie)[2])["broker"]["connected"], 15)


def test_history_from_the_counters_sqlite(tmp_path: Path, broker: MosquittoBroker) -> None:
    from people_counter.outputs.store import CountStore
    from people_counter.stage_data import CountingResult, PersonEvent, Totals

    state_dir = tmp_path / "state"
    store = CountStore(state_dir)
    now = time.time()
    totals = Totals()
    for minute in range(30):
        ts = now - 30 * 60 + minute * 60
        events = tuple(PersonEvent("enter", minute * 10 + k, ts) for k in range(minute % 3))
        totals.total += len(events)
        store.record(totals, CountingResult(events=events), count=minute % 5, ts=ts, last_track_id=minute * 10 + 9)
        store.flush(ts)
    store.close()
    database = next(state_dir.glob("*.sqlite3"))
    with short_tmp() as run, DashboardProcess(run, broker, run / "none.sock", database=database) as dash:
        _, cookie = dash.login()
        status, _, body = http_get(dash.url + "/api/history?range=hour", cookie)
        assert status == 200
        data = json.loads(body)
        assert data["error"] == "" and len(data["points"]) == 60
        filled = [p for p in data["points"] if p["people"] is not None]
        assert len(filled) >= 25
        assert sum(p["entries"] for p in filled) == pytest.approx(sum(m % 3 for m in range(30)), abs=3)
        for name in ("day", "week"):
            assert http_get(dash.url + f"/api/history?range={name}", cookie)[0] == 200
        assert http_get(dash.url + "/api/history?range=year", cookie)[0] == 400
        status, headers, body = http_get(dash.url + "/api/history.csv?range=hour", cookie)
        assert status == 200 and headers["content-type"].startswith("text/csv")
        assert "attachment" in headers["content-disposition"]
        lines = body.decode().splitlines()
        assert lines[0].startswith("minute_utc,people_in_view_avg")
        assert len(lines) >= 26


def test_history_without_a_database_is_empty_not_an_error(pair: LivePair, cookie: str) -> None:
    status, _, body = pair.get("/api/history?range=day", cookie)
    data = json.loads(body)
    assert status == 200 and data["error"] and all(p["people"] is None for p in data["points"])


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return False


def test_viewer_limit_answers_503(broker: MosquittoBroker) -> None:
    with short_tmp() as run, DashboardProcess(run, broker, run / "none.sock", extra={"max_viewers": 2}) as dash:
        _, cookie = dash.login()
        viewers = [MjpegViewer(dash.url, cookie) for _ in range(2)]
        try:
            assert _wait(lambda: all(v.status == 200 for v in viewers), 5)
            assert http_get(dash.url + "/video.mjpg", cookie)[0] == 503
        finally:
            for v in viewers:
                v.close()
        # Leaving frees the places.
        assert _wait(lambda: http_get(dash.url + "/snapshot.jpg", cookie)[0] == 503, 2)
        late = MjpegViewer(dash.url, cookie)
        try:
            assert _wait(lambda: late.status == 200, 5)
        finally:
            late.close()


def test_encoder_sigstop_then_video_returns(pair: LivePair, cookie: str) -> None:
    import os
    import signal

    import psutil

    def encoder() -> dict[str, object]:
        return json.loads(pair.get("/api/state", cookie)[2])["encoder"]  # type: ignore[no-any-return]

    sink = FrameSink(pair.frame_socket, 20.0)
    done = threading.Event()
    feeder = threading.Thread(target=feed_frames, args=(sink, done))
    feeder.start()
    viewer = MjpegViewer(pair.url, cookie)
    procs = [psutil.Process(pair.stream.pid), *psutil.Process(pair.stream.pid).children()]
    try:
        assert _wait(lambda: encoder()["video"], 10)
        for p in procs:
            os.kill(p.pid, signal.SIGSTOP)
        try:
            assert _wait(lambda: encoder()["state"] == "not responding" and not encoder()["video"], 5)
            dropped = sink.dropped
            assert _wait(lambda: sink.dropped > dropped, 5)  # the counter's side drops instead of waiting
        finally:
            for p in procs:
                os.kill(p.pid, signal.SIGCONT)
        assert _wait(lambda: encoder()["video"], 5)
        seen = len(viewer.received)
        assert _wait(lambda: len(viewer.received) > seen + 10, 5)  # the same viewer sees video again
    finally:
        done.set()
        feeder.join()
        sink.close()
        viewer.close()
