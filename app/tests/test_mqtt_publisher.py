"""MqttPublisher against a real Mosquitto (password file, ACL) and a real subscriber; no mocks."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from people_counter.config import MqttConfig
from people_counter.contract import StateMessage
from people_counter.errors import ConfigError
from people_counter.outputs.mqtt_publisher import RESERVED_SLOTS, MqttPublisher
from people_counter.stage_data import Alert, CounterState, PersonEvent
from testsupport.helpers import wait_until
from testsupport.mosquitto_broker import (
    MessageCollector,
    MosquittoBroker,
    ReceivedMessage,
    mosquitto_available,
    subscribe_collect,
)

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


def nothing_in_flight(publisher: MqttPublisher) -> Callable[[], bool]:
    """Every message handed to paho has been acknowledged by the broker."""
    return lambda: publisher.queued_messages == 0


class FakeClock:
    """The publisher's clock, moved by the test: rate limits and heartbeats without waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def count_handed_to_paho(publisher: MqttPublisher, topic: str) -> list[str]:
    """Record the payloads the publisher hands to paho on `topic` (what it decided to send)."""
    handed: list[str] = []
    publish = publisher._client.publish

    def spy(topic_: str, payload: str, *args: object, **kwargs: object) -> object:
        if topic_ == topic:
            handed.append(payload)
        return publish(topic_, payload, *args, **kwargs)  # type: ignore[arg-type]

    publisher._client.publish = spy  # type: ignore[method-assign]
    return handed


SLOW_CALL_S = 0.1
"""A publish call that never waits takes tens of microseconds; one waiting on a broker that is down
or hung waits a connect timeout (3 s) or forever. 0.1 s tells the two apart on a loaded machine."""


def slow_calls(calls: Callable[[], object], n: int) -> int:
    """How many of n calls took longer than SLOW_CALL_S of real time."""
    slow = 0
    for _ in range(n):
        started = time.monotonic()
        calls()
        slow += time.monotonic() - started > SLOW_CALL_S
    return slow


def few_slow(slow: int, n: int) -> bool:
    """At most a tenth of the calls were slow. Why this cannot flake: a call is slow only when the
    process is descheduled for 0.1 s in the middle of it, which a loaded 2-core machine does now and
    then but not to one call in ten; a publisher that waits on the broker makes every call slow."""
    return slow <= n // 10


def retained_only(collector: MessageCollector, marker: Callable[[], None], topic: str) -> list[ReceivedMessage]:
    """The messages a new subscriber got before a marker published now on `topic`. The broker sends
    a subscriber its retained messages before anything published after the subscription, and in
    order, so once the marker is in, nothing retained is still to come: no waiting for silence."""
    marker()
    seen = collector.wait_for(lambda m: m.topic == topic and not m.retain)
    assert seen is not None, "the marker did not arrive"
    return collector.messages[: collector.messages.index(seen)]


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
        assert set(state) == set(StateMessage.__annotations__)
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
        before = retained_only(late, lambda: publisher.publish_alert(Alert("occupancy", 1, 1, 0.0)), f"{base}/alert")
        assert {m.topic for m in before} == {f"{base}/state", f"{base}/available"}
        assert all(m.retain for m in before) and len(before) == 2
        assert json.loads(late.on_topic(f"{base}/state")[0].payload)["total"] == 5

    assert stop_returns(publisher, make_state(count=0, total=6))
    with collect(broker, [f"{base}/#"]) as after:
        assert after.wait_count(f"{base}/state", 1) and after.wait_count(f"{base}/available", 1)
        assert after.on_topic(f"{base}/available")[0].text == "offline"
        assert json.loads(after.on_topic(f"{base}/state")[0].payload)["total"] == 6


STOP_BOUND_S = 15.0
"""stop() gives itself STOP_TIMEOUT_S (2 s) of its own clock. The bound is what systemd allows the
whole service from SIGTERM to exit (TimeoutStopSec=15) before it kills it, and it only bounds a
hang: a stop that waits on a broker that is gone or hung waits on the keepalive (30 s) or forever,
not a little longer than usual, so it cannot pass, while a loaded machine would have to stall this
process for 13 s in one stop to fail a good one."""


def stop_returns(publisher: MqttPublisher, final_state: CounterState | None) -> bool:
    """stop() on another thread; True once it has returned, False if it is still waiting at the bound."""
    stopper = threading.Thread(target=publisher.stop, args=(final_state,), daemon=True)
    stopper.start()
    stopper.join(STOP_BOUND_S)
    return not stopper.is_alive()


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
            child.wait(30)
            offline = live.wait_for(lambda m: m.text == "offline")
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
        # Nothing in flight when the broker dies: an `online` still unacknowledged would be resent by
        # paho on the reconnect, and the test would pass even if `online` went out on the first
        # connection only.
        assert wait_until(nothing_in_flight(publisher))
        own.kill()
        assert wait_until(lambda: not publisher.connected)
        # The counting loop goes on while the broker is away: nothing raises, nothing blocks.
        totals = iter(range(10, 60))
        slow = slow_calls(lambda: publisher.publish_state(make_state(count=2, total=next(totals))), 50)
        assert few_slow(slow, 50), slow
        publisher.publish_event(PersonEvent("enter", 99, 2000.0))
        own.start()
        with collect(own, [f"{base}/#"]) as live:
            assert wait_until(published(publisher))
            # A few more frames after the reconnect, each offered once the previous one is acknowledged.
            for _ in range(5):
                publisher.publish_state(make_state(count=2, total=59))
                assert wait_until(nothing_in_flight(publisher))
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
        assert wait_until(nothing_in_flight(publisher))
        own.pause()  # sockets stay open, no PUBACK comes back
        totals = iter(range(2, 101))

        def one_frame() -> None:
            total = next(totals)
            publisher.publish_state(make_state(total=total))
            publisher.publish_event(PersonEvent("enter", total, float(total)))

        slow = slow_calls(one_frame, 99)
        assert few_slow(slow, 99), slow  # nothing waited on the hung broker
        assert publisher.connected  # paho has not noticed yet (keepalive is 30 s)
        own.kill()
        assert wait_until(lambda: not publisher.connected)
        for total in range(101, 201):  # counting goes on while the broker is away
            publisher.publish_state(make_state(total=total))
        own.start()
        assert wait_until(published(publisher))

        def offered_and_acknowledged() -> bool:  # the counting loop goes on offering its latest state
            publisher.publish_state(make_state(total=200))
            return publisher.queued_messages == 0 and json.loads(sent_states[-1])["total"] == 200

        sent_states = count_handed_to_paho(publisher, f"{base}/state")
        assert wait_until(offered_and_acknowledged)
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
        assert wait_until(lambda: publisher.last_error is not None)
        assert publisher.last_error is not None and "cannot connect to MQTT broker" in publisher.last_error
        own.start()
        assert wait_until(published(publisher))
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

    def three_attempts() -> bool:
        publisher.publish_state(make_state())  # the counting loop keeps calling: nothing raises
        publisher.publish_event(PersonEvent("enter", 1, 1.0))
        return publisher.connect_attempts >= 3

    assert wait_until(three_attempts)
    attempts = publisher.connect_attempts
    refusals = [r for r in caplog.records if "refused the login for user 'counter'" in r.getMessage()]
    # One line per attempt (the count is read first: an attempt is counted before it is logged).
    assert len(refusals) >= attempts >= 3
    # Backoff 1, 2, 4 s: the attempts are at least about 1 s, then 2 s apart. Lower bounds only: a
    # loaded machine makes paho's timers late, never early, so these cannot flake, and a retry loop
    # without backoff (milliseconds apart) fails them.
    gaps = [b.created - a.created for a, b in itertools.pairwise(refusals[:3])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.8, gaps
    assert refusals[0].levelno == logging.ERROR
    assert refusals[0].getMessage() == (
        f"MQTT broker 127.0.0.1:{broker.port} refused the login for user 'counter': not authorized"
    )
    assert not publisher.connected
    assert publisher.last_error == refusals[0].getMessage()
    assert stop_returns(publisher, None)


def test_missing_password_file_is_a_clear_error_at_start(broker: MosquittoBroker, tmp_path: Path) -> None:
    publisher = MqttPublisher(config_for(broker, tmp_path / "absent"), "dev-missing")
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: .*absent: no such file"):
        publisher.start()


def test_rate_limit_and_heartbeat(broker: MosquittoBroker, password_file: Path, device_id: str) -> None:
    """On the publisher's clock, moved by the test: a changing state goes out at most once every
    min_interval_s, the latest one once the interval has passed, an unchanged one every heartbeat_s.
    Each offer waits until nothing is in flight, so the only gate left is the clock."""
    base = f"people_counter/{device_id}"
    step = 1 / 64  # exact in binary: no rounding at the interval's edges
    cfg = config_for(broker, password_file, min_interval_s=16 * step, heartbeat_s=32 * step)
    clock = FakeClock()
    publisher = MqttPublisher(cfg, device_id, clock=clock)
    publisher.start()
    assert wait_until(published(publisher))
    sent = count_handed_to_paho(publisher, f"{base}/state")

    def offer(total: int) -> None:
        publisher.publish_state(make_state(count=1, total=total))
        assert wait_until(nothing_in_flight(publisher))

    def totals_sent() -> list[int]:
        return [json.loads(message)["total"] for message in sent]

    with collect(broker, [f"{base}/state"]) as live:
        # A new figure on every frame, 64 frames a second, for 70 frames (steps 0 to 69).
        for i in range(70):
            offer(total=i)
            clock.now += step
        # One every 16 steps: 0, 16, 32, 48 and 64.
        assert totals_sent() == [0, 16, 32, 48, 64]
        # The latest figure (69) is pending; it goes out once the interval has passed (step 80).
        clock.now = 1000.0 + 79 * step
        offer(total=69)
        assert totals_sent()[-1] == 64
        clock.now += step
        offer(total=69)
        assert totals_sent() == [0, 16, 32, 48, 64, 69]
        # Unchanged figures: only the heartbeat, every 32 steps (at 112, 144 and 176 of 80 to 180).
        for _ in range(100):
            clock.now += step
            offer(total=69)
        assert totals_sent() == [0, 16, 32, 48, 64, 69, 69, 69, 69]
        assert live.wait_for(lambda m: len(live.on_topic(f"{base}/state")) >= len(sent)) is not None
        assert [json.loads(m.payload)["total"] for m in live.on_topic(f"{base}/state")][-4:] == [69] * 4
    publisher.stop(None)


def test_retained_state_is_republished_on_every_reconnect(password_file: Path, device_id: str) -> None:
    """A broker restarted without persistence has forgotten the retained state, `online` and the
    original UI's `person`. The publisher sends them again on its own as it reconnects: no new
    frame, no heartbeat (its clock stands still), and nothing of the first connection left in
    flight to be resent by paho."""
    base = f"people_counter/{device_id}"
    clock = FakeClock()
    with MosquittoBroker() as own:
        cfg = config_for(own, password_file, heartbeat_s=5.0, compat_topics=True)
        publisher = MqttPublisher(cfg, device_id, clock=clock)
        publisher.start()
        assert wait_until(published(publisher))
        publisher.publish_state(make_state(count=3, total=5))
        assert wait_until(nothing_in_flight(publisher))
        for restart in (1, 2):
            own.kill()
            assert wait_until(lambda: not publisher.connected)
            own.start()
            assert wait_until(lambda restart=restart: publisher.connections == 1 + restart)
            with collect(own, [f"{base}/state", f"{base}/available"]) as late:
                state = late.wait_for(lambda m: m.topic.endswith("/state"))
                online = late.wait_for(lambda m: m.topic.endswith("/available"))
                assert state is not None and state.retain, f"no retained state after restart {restart}"
                assert (json.loads(state.payload)["count"], json.loads(state.payload)["total"]) == (3, 5)
                assert online is not None and online.retain and online.text == "online"
            with collect(own, ["person"], user="ui") as ui:
                person = ui.wait_for(lambda m: m.topic == "person")
                assert person is not None and person.retain, f"no retained person after restart {restart}"
                assert json.loads(person.payload) == {"count": 3, "total": 5}
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
            assert wait_until(nothing_in_flight(publisher))  # every frame's state goes out (interval 0)
        publisher.publish_event(PersonEvent("enter", 3, 5.0))  # no compat message for enter
        publisher.publish_event(PersonEvent("exit", 3, 9.5, duration_s=4.5))
        assert ui.wait_count("person/duration", 1)
        assert ui.wait_count("person", 2)
        # The broker keeps one publisher's messages in order: with the duration in, every count is.
        assert [json.loads(m.payload) for m in ui.on_topic("person")] == [
            {"count": 1, "total": 1},
            {"count": 2, "total": 3},
        ]
        assert [json.loads(m.payload) for m in ui.on_topic("person/duration")] == [{"duration": 4.5}]
        assert not any(m.retain for m in ui.messages)
    # The original UI opened now, in a quiet scene, shows the figures at once: `person` is retained.
    with collect(broker, ["person"], user="ui") as late:
        person = late.wait_for(lambda m: m.topic == "person")
        assert person is not None and person.retain and json.loads(person.payload) == {"count": 2, "total": 3}
    publisher.stop(None)


def test_queue_is_bounded_while_the_broker_is_away(password_file: Path, device_id: str) -> None:
    base = f"people_counter/{device_id}"
    own = MosquittoBroker()
    try:
        max_queued = 50
        publisher = MqttPublisher(config_for(own, password_file, max_queued=max_queued), device_id)
        publisher.start()
        sent = 10 * max_queued
        track_ids = iter(range(sent))
        slow = slow_calls(lambda: publisher.publish_event(PersonEvent("enter", (i := next(track_ids)), float(i))), sent)
        assert few_slow(slow, sent), slow
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
            assert wait_until(published(publisher))
            events = live.wait_count(f"{base}/event", kept)
            assert [json.loads(m.payload)["track_id"] for m in events] == list(range(kept))
            assert live.wait_for(lambda m: m.topic.endswith("/available") and m.text == "online")
            publisher.publish_state(make_state(count=1, total=1))
            assert live.wait_count(f"{base}/state", 1)
        publisher.stop(None)
    finally:
        own.close()


@pytest.mark.parametrize("broker_fault", ["killed", "hung"])
def test_stop_is_bounded_when_the_broker_is_gone(password_file: Path, device_id: str, broker_fault: str) -> None:
    """A killed broker closes the link; a hung one (SIGSTOP) keeps it open and never answers, so a
    stop that waited for its PUBACK or for paho's thread to finish writing would wait for ever."""
    with MosquittoBroker() as own:
        publisher = MqttPublisher(config_for(own, password_file), device_id)
        publisher.start()
        assert wait_until(published(publisher))
        if broker_fault == "killed":
            own.kill()
        else:
            own.pause()
        assert stop_returns(publisher, make_state())


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
