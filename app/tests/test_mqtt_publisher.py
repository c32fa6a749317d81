"""MqttPublisher against a real Mosquitto (password file, ACL) and a real subscriber; no mocks."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from people_counter.config import MqttConfig
from people_counter.errors import ConfigError
from people_counter.outputs.mqtt_publisher import RESERVED_SLOTS, MqttPublisher
from people_counter.stage_data import Alert, CounterState, PersonEvent
from testsupport.mosquitto_broker import MessageCollector, MosquittoBroker, mosquitto_available, subscribe_collect

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs /usr/sbin/mosquitto and mosquitto_passwd"),
]

APP_DIR = Path(__file__).resolve().parents[1]


def make_state(count: int = 1, total: int = 1, ts: float | None = None, fps: float = 10.0) -> CounterState:
    return CounterState(
        count=count,
        total=total,
        in_count=0,
        out_count=0,
        avg_duration_s=0.0,
        fps=fps,
        inference_ms=8.0,
        dropped_frames=0,
        input="ok",
        uptime_s=1.0,
        ts=time.time() if ts is None else ts,
    )


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as running:
        yield running


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "mqtt-password"
    path.write_text("counterpw\n", encoding="utf-8")  # the trailing newline must be stripped
    return path


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    # One device per test, so retained messages of one test never leak into another.
    return "dev-" + request.node.name.replace("_", "-")[:40]


def config_for(broker: MosquittoBroker, password_file: Path, **overrides: object) -> MqttConfig:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "username": "counter",
        "password_file": password_file,
        "min_interval_s": 0.0,
        "heartbeat_s": 5.0,
        "reconnect_max_s": 2.0,
    }
    values.update(overrides)
    return MqttConfig.model_validate(values)


def collect(broker: MosquittoBroker, topics: list[str], user: str = "dashboard") -> MessageCollector:
    password = broker.users[user]
    return subscribe_collect(broker.host, broker.port, user, password, topics)


def published(publisher: MqttPublisher) -> Callable[[], bool]:
    return lambda: publisher.connected


def test_state_event_alert_available_payloads_and_retain(
    broker: MosquittoBroker, password_file: Path, device_id: str
) -> None:
    publisher = MqttPublisher(config_for(broker, password_file), device_id)
    base = f"people_counter/{device_id}"
    with collect(broker, [f"{base}/#"]) as live:
        publisher.start()
        assert wait_until(published(publisher))
        publisher.publish_state(make_state(count=2, total=5))
        publisher.publish_event(PersonEvent("enter", 7, 1000.5))
        publisher.publish_event(PersonEvent("exit", 7, 1012.25, duration_s=11.75))
        publisher.publish_alert(Alert("occupancy", 12, 10, 1013.0))
        assert live.wait_count(f"{base}/alert", 1)
        assert live.wait_count(f"{base}/event", 2)

        state = json.loads(live.on_topic(f"{base}/state")[-1].payload)
        assert set(state) == {
            "count", "total", "in", "out", "avg_duration_s", "fps", "inference_ms",
            "dropped_frames", "input", "uptime_s", "ts",
        }  # fmt: skip
        assert (state["count"], state["total"], state["input"]) == (2, 5, "ok")
        events = [json.loads(m.payload) for m in live.on_topic(f"{base}/event")]
        assert events == [
            {"type": "enter", "track_id": 7, "ts": 1000.5, "duration_s": None},
            {"type": "exit", "track_id": 7, "ts": 1012.25, "duration_s": 11.75},
        ]
        alert = json.loads(live.on_topic(f"{base}/alert")[0].payload)
        assert alert == {"type": "occupancy", "value": 12, "threshold": 10, "ts": 1013.0}
        assert live.on_topic(f"{base}/available")[0].text == "online"

    # A subscriber that arrives later sees the retained state and availability, and nothing else.
    with collect(broker, [f"{base}/#"]) as late:
        assert late.wait_count(f"{base}/state", 1) and late.wait_count(f"{base}/available", 1)
        time.sleep(0.2)
        assert {m.topic for m in late.messages} == {f"{base}/state", f"{base}/available"}
        assert all(m.retain for m in late.messages)
        assert json.loads(late.on_topic(f"{base}/state")[0].payload)["total"] == 5

    started = time.monotonic()
    publisher.stop(make_state(count=0, total=6))
    assert time.monotonic() - started < 2.5
    with collect(broker, [f"{base}/#"]) as after:
        assert after.wait_count(f"{base}/state", 1) and after.wait_count(f"{base}/available", 1)
        assert after.on_topic(f"{base}/available")[0].text == "offline"
        assert json.loads(after.on_topic(f"{base}/state")[0].payload)["total"] == 6


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from people_counter.config import MqttConfig
    from people_counter.outputs.mqtt_publisher import MqttPublisher
    from people_counter.stage_data import CounterState
    cfg = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), username="counter",
                     password_file=Path(sys.argv[2]), keepalive_s=5)
    publisher = MqttPublisher(cfg, sys.argv[3])
    publisher.start()
    while not publisher.connected:
        time.sleep(0.02)
    publisher.publish_state(CounterState(3, 4, 0, 0, 0.0, 10.0, 8.0, 0, "ok", 1.0, time.time()))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_last_will_offline_when_the_process_is_killed(
    broker: MosquittoBroker, password_file: Path, device_id: str
) -> None:
    base = f"people_counter/{device_id}"
    with collect(broker, [f"{base}/available"]) as live:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(broker.port), str(password_file), device_id],
            cwd=APP_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            assert live.wait_for(lambda m: m.text == "online")
            os.kill(child.pid, signal.SIGKILL)
            child.wait(5)
            offline = live.wait_for(lambda m: m.text == "offline", timeout_s=5)
            assert offline is not None
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
    with collect(broker, [f"{base}/available"]) as late:
        message = late.wait_for(lambda m: True)
        assert message is not None and message.text == "offline" and message.retain


def test_broker_killed_and_restarted_state_returns(password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    with MosquittoBroker() as own:
        publisher = MqttPublisher(config_for(own, password_file, min_interval_s=0.1), device_id)
        publisher.start()
        assert wait_until(published(publisher))
        publisher.publish_state(make_state(count=1, total=1))
        own.kill()
        assert wait_until(lambda: not publisher.connected)
        # The counting loop goes on while the broker is away: nothing raises, nothing blocks.
        started = time.monotonic()
        for frame in range(50):
            publisher.publish_state(make_state(count=2, total=10 + frame))
        publisher.publish_event(PersonEvent("enter", 99, 2000.0))
        assert time.monotonic() - started < 0.5
        own.start()
        with collect(own, [f"{base}/#"]) as live:
            assert wait_until(published(publisher), 5)
            for _ in range(20):  # a few more frames after the reconnect
                publisher.publish_state(make_state(count=2, total=59))
                time.sleep(0.02)
            assert live.wait_for(lambda m: m.topic.endswith("/event") and b'"track_id":99' in m.payload)
            assert live.wait_for(lambda m: m.topic.endswith("/available") and m.text == "online")
        with collect(own, [f"{base}/state"]) as late:
            state = late.wait_for(lambda m: True)
            assert state is not None and state.retain
            assert json.loads(state.payload)["total"] == 59
        assert publisher.connections == 2
        publisher.stop(None)


def test_states_stuck_in_a_hung_link_never_overwrite_the_latest(password_file: Path, device_id: str) -> None:
    """A broker that stops answering, then dies: the retained state after the restart is the newest."""
    base = f"people_counter/{device_id}"
    with MosquittoBroker() as own:
        publisher = MqttPublisher(config_for(own, password_file), device_id)
        publisher.start()
        assert wait_until(published(publisher))
        publisher.publish_state(make_state(total=1))
        assert wait_until(lambda: publisher.queued_messages == 0)
        own.pause()  # sockets stay open, no PUBACK comes back
        started = time.monotonic()
        for total in range(2, 101):
            publisher.publish_state(make_state(total=total))
            publisher.publish_event(PersonEvent("enter", total, float(total)))
            time.sleep(0.002)
        assert time.monotonic() - started < 2.0  # nothing waited on the hung broker
        assert publisher.connected  # paho has not noticed yet (keepalive is 30 s)
        own.kill()
        assert wait_until(lambda: not publisher.connected)
        for total in range(101, 201):  # counting goes on while the broker is away
            publisher.publish_state(make_state(total=total))
        own.start()
        assert wait_until(published(publisher), 5)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the counting loop goes on
            publisher.publish_state(make_state(total=200))
            time.sleep(0.02)
        with collect(own, [f"{base}/state"]) as late:
            state = late.wait_for(lambda m: True)
            assert state is not None and state.retain
            assert json.loads(state.payload)["total"] == 200
        publisher.stop(None)


def test_broker_down_at_start(password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    own = MosquittoBroker()
    try:
        publisher = MqttPublisher(config_for(own, password_file), device_id)
        publisher.start()  # nobody listens on the port yet
        publisher.publish_state(make_state(count=4, total=4))
        publisher.publish_event(PersonEvent("enter", 1, 10.0))
        assert not publisher.connected
        time.sleep(0.3)
        assert publisher.last_error is not None and "cannot connect to MQTT broker" in publisher.last_error
        own.start()
        assert wait_until(published(publisher), 5)
        publisher.publish_state(make_state(count=4, total=4))
        with collect(own, [f"{base}/state", f"{base}/available"]) as late:
            assert late.wait_count(f"{base}/state", 1)
            assert json.loads(late.on_topic(f"{base}/state")[0].payload)["count"] == 4
            assert late.wait_for(lambda m: m.topic.endswith("available") and m.text == "online")
        publisher.stop(None)
    finally:
        own.close()


def test_wrong_password_is_one_clear_error_per_attempt_with_backoff(
    broker: MosquittoBroker, tmp_path: Path, device_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n", encoding="utf-8")
    caplog.set_level(logging.INFO, logger="people_counter.mqtt")
    publisher = MqttPublisher(config_for(broker, wrong, reconnect_max_s=8.0), device_id)
    publisher.start()
    window_s = 4.5
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        publisher.publish_state(make_state())  # the counting loop keeps calling: nothing raises
        publisher.publish_event(PersonEvent("enter", 1, 1.0))
        time.sleep(0.01)
    refusals = [r for r in caplog.records if "refused the login for user 'counter'" in r.getMessage()]
    # Backoff 1, 2, 4 s: attempts at about 0, 1, 3 s within the window.
    assert 2 <= len(refusals) <= 4, [r.getMessage() for r in refusals]
    assert publisher.connect_attempts == len(refusals)
    assert refusals[0].levelno == logging.ERROR
    assert refusals[0].getMessage() == (
        f"MQTT broker 127.0.0.1:{broker.port} refused the login for user 'counter': not authorized"
    )
    assert not publisher.connected
    assert publisher.last_error == refusals[0].getMessage()
    started = time.monotonic()
    publisher.stop(None)
    assert time.monotonic() - started < 2.5


def test_missing_password_file_is_a_clear_error_at_start(broker: MosquittoBroker, tmp_path: Path) -> None:
    publisher = MqttPublisher(config_for(broker, tmp_path / "absent"), "dev-missing")
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: .*absent: no such file"):
        publisher.start()


def test_rate_limit_and_heartbeat(broker: MosquittoBroker, password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    cfg = config_for(broker, password_file, min_interval_s=0.3, heartbeat_s=0.5)
    publisher = MqttPublisher(cfg, device_id)
    publisher.start()
    assert wait_until(published(publisher))
    publisher.publish_state(make_state(count=1, total=0))
    with collect(broker, [f"{base}/state"]) as live:
        assert live.wait_count(f"{base}/state", 1)  # the retained one
        live.messages.clear()
        # A new figure on every frame (100 frames a second) for one second.
        started = time.monotonic()
        total = 0
        while time.monotonic() - started < 1.0:
            total += 1
            publisher.publish_state(make_state(count=1, total=total))
            time.sleep(0.01)
        changing = list(live.on_topic(f"{base}/state"))
        # At most one message every 0.3 s: 4 in a second (the first goes out at once).
        assert 3 <= len(changing) <= 5, len(changing)
        # The latest figure is pending and goes out once the interval has passed.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            publisher.publish_state(make_state(count=1, total=total))
            time.sleep(0.01)
        assert json.loads(live.on_topic(f"{base}/state")[-1].payload)["total"] == total
        # Unchanged figures: only the heartbeat, every 0.5 s.
        live.messages.clear()
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            publisher.publish_state(make_state(count=1, total=total))
            time.sleep(0.01)
        heartbeats = live.on_topic(f"{base}/state")
        assert 2 <= len(heartbeats) <= 4, len(heartbeats)
        assert {json.loads(m.payload)["total"] for m in heartbeats} == {total}
    publisher.stop(None)


def test_compat_topics(broker: MosquittoBroker, password_file: Path, device_id: str) -> None:
    publisher = MqttPublisher(config_for(broker, password_file, compat_topics=True), device_id)
    publisher.start()
    assert wait_until(published(publisher))
    with collect(broker, ["person", "person/duration"], user="ui") as ui:
        # Frames as the counting loop offers them: the figures change once, the fps often.
        frames = [make_state(count=1, total=1, fps=9.0 + i / 10) for i in range(10)]
        frames += [make_state(count=2, total=3, fps=9.0 + i / 10) for i in range(10)]
        for state in frames:
            publisher.publish_state(state)
            time.sleep(0.02)
        publisher.publish_event(PersonEvent("enter", 3, 5.0))  # no compat message for enter
        publisher.publish_event(PersonEvent("exit", 3, 9.5, duration_s=4.5))
        assert ui.wait_count("person/duration", 1)
        assert ui.wait_count("person", 2)
        time.sleep(0.2)
        assert [json.loads(m.payload) for m in ui.on_topic("person")] == [
            {"count": 1, "total": 1},
            {"count": 2, "total": 3},
        ]
        assert [json.loads(m.payload) for m in ui.on_topic("person/duration")] == [{"duration": 4.5}]
        assert not any(m.retain for m in ui.messages)
    publisher.stop(None)


def test_queue_is_bounded_while_the_broker_is_away(password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    own = MosquittoBroker()
    try:
        max_queued = 50
        publisher = MqttPublisher(config_for(own, password_file, max_queued=max_queued), device_id)
        publisher.start()
        sent = 10 * max_queued
        started = time.monotonic()
        for track_id in range(sent):
            publisher.publish_event(PersonEvent("enter", track_id, float(track_id)))
        assert time.monotonic() - started < 1.0
        kept = max_queued - RESERVED_SLOTS
        assert publisher.dropped_messages == sent - kept
        # Memory stays flat however long the outage lasts.
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for track_id in range(20_000):
            publisher.publish_event(PersonEvent("enter", track_id, 0.0))
            publisher.publish_alert(Alert("loitering", 61.0, 60.0, 0.0))
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 100_000, grown
        # The oldest messages were kept (paho refuses new ones), and they arrive after the outage,
        # with room left for `online` and the state.
        own.start()
        with collect(own, [f"{base}/#"]) as live:
            publisher.publish_state(make_state(count=1, total=1))
            assert wait_until(published(publisher), 5)
            events = live.wait_count(f"{base}/event", kept, timeout_s=5)
            assert [json.loads(m.payload)["track_id"] for m in events] == list(range(kept))
            assert live.wait_for(lambda m: m.topic.endswith("/available") and m.text == "online")
            publisher.publish_state(make_state(count=1, total=1))
            assert live.wait_count(f"{base}/state", 1)
        publisher.stop(None)
    finally:
        own.close()


def test_stop_is_bounded_when_the_broker_is_gone(password_file: Path, device_id: str) -> None:
    with MosquittoBroker() as own:
        publisher = MqttPublisher(config_for(own, password_file), device_id)
        publisher.start()
        assert wait_until(published(publisher))
        own.kill()
        started = time.monotonic()
        publisher.stop(make_state())
        assert time.monotonic() - started < 2.5


def test_tls_with_the_brokers_ca(password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    with MosquittoBroker(tls=True) as own:
        assert own.tls_port is not None
        tls = {"ca_file": own.ca_file}
        publisher = MqttPublisher(config_for(own, password_file, port=own.tls_port, tls=tls), device_id)
        publisher.start()
        assert wait_until(published(publisher))
        publisher.publish_state(make_state(count=7, total=8))
        with subscribe_collect(
            own.host, own.tls_port, "dashboard", "dashpw", [f"{base}/state"], ca_file=own.ca_file
        ) as seen:
            message = seen.wait_for(lambda m: True)
            assert message is not None and json.loads(message.payload)["count"] == 7
        publisher.stop(None)


def test_tls_files_and_username_are_checked_at_start(broker: MosquittoBroker, tmp_path: Path) -> None:
    cfg = config_for(broker, tmp_path / "pw", tls={"ca_file": tmp_path / "no-ca.crt"})
    (tmp_path / "pw").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file: .*no-ca\.crt: no such file"):
        MqttPublisher(cfg, "dev-tls").start()
    cfg = config_for(broker, tmp_path / "pw", username=None)
    with pytest.raises(ConfigError, match=r"mqtt\.password_file is set but mqtt\.username is not"):
        MqttPublisher(cfg, "dev-nouser").start()
