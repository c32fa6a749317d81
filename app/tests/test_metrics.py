"""/metrics by Prometheus conventions: a real dashboard process fed by a real Mosquitto, scraped over HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from people_counter import __version__
from testsupport.live_stack import CounterPublisher, DashboardProcess, http_get, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]

DEVICE = "metrics-device"
TOKEN = "s3cret-scrape-token"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b


STALE_AFTER_S = 300.0


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    with short_tmp() as run:
        yield run


@pytest.fixture(scope="module")
def dashboard(broker: MosquittoBroker, run_dir: Path) -> Iterator[DashboardProcess]:
    # No encoder: the video source keeps retrying its socket, and the stream gauges read 0.
    # The longest stale_after_s there is: a state stamped now stays fresh however slowly the test
    # runs, and the stale one is stamped older than that (no window of wall clock to meet).
    with DashboardProcess(
        run_dir, broker, run_dir / "no-encoder.sock", device_id=DEVICE, stale_after_s=STALE_AFTER_S
    ) as d:
        yield d


@pytest.fixture(scope="module")
def counter(broker: MosquittoBroker) -> Iterator[CounterPublisher]:
    with CounterPublisher(broker, DEVICE) as c:
        c.available("online")
        yield c


def promtool() -> Path:
    """Debian's promtool, unpacked by `make setup` ($PEOPLE_COUNTER_PROMTOOL); skipped only outside CI."""
    path = os.environ.get("PEOPLE_COUNTER_PROMTOOL")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("PEOPLE_COUNTER_PROMTOOL is not set: run the tests with make test-app")
        pytest.skip("PEOPLE_COUNTER_PROMTOOL is not set (make setup unpacks promtool and sets it)")
    if not Path(path).is_file():
        pytest.fail(f"PEOPLE_COUNTER_PROMTOOL={path} does not exist: run make setup")
    return Path(path)


def get_metrics(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(url.split("/")[2], timeout=5)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def scrape(dashboard: DashboardProcess) -> Samples:
    status, _, body = http_get(dashboard.url + "/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_until(dashboard: DashboardProcess, done: Callable[[Samples], bool], timeout_s: float = 30.0) -> Samples:
    """Scrapes until `done` holds; the timeout only fails a test, it is no window to meet."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(dashboard)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def state_count(samples: Samples) -> float:
    return value(samples, "peoplecounter_dashboard_mqtt_messages_total", kind="state") or 0.0


def publish_state(dashboard: DashboardProcess, counter: CounterPublisher, **figures: object) -> Samples:
    """Publish a state and scrape once the dashboard has taken it in."""
    before = state_count(scrape(dashboard))
    counter.state(**figures)
    samples = scrape_until(dashboard, lambda s: state_count(s) > before)
    assert state_count(samples) == before + 1
    return samples


def publish_event(counter: CounterPublisher, type_: str, duration_s: float | None) -> None:
    message = {"type": type_, "track_id": 7, "ts": time.time(), "duration_s": duration_s}
    counter.client.publish(counter.topics.event, json.dumps(message), qos=1).wait_for_publish(30)


def test_the_scrape_is_promtool_clean_in_both_formats(dashboard: DashboardProcess, counter: CounterPublisher) -> None:
    publish_state(dashboard, counter, count=2, total=5, store="ok", input_down_s=0.0)
    publish_event(counter, "exit", 4.0)
    scrape_until(dashboard, lambda s: (value(s, "peoplecounter_visit_seconds_count") or 0) > 0)
    status, headers, body = http_get(dashboard.url + "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    check = subprocess.run(
        [str(promtool()), "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert check.returncode == 0 and not check.stdout and not check.stderr, (check.stdout + check.stderr).decode()
    # Prometheus asks for OpenMetrics first; the same figures come in that format.
    status, headers, text = get_metrics(dashboard.url, {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {family.name: family.type for family in parse_openmetrics(text)}
    assert families["peoplecounter_entries"] == "counter"
    assert families["peoplecounter_visit_seconds"] == "histogram"


def test_the_figures_of_the_state_and_the_process(dashboard: DashboardProcess, counter: CounterPublisher) -> None:
    samples = publish_state(
        dashboard,
        counter,
        count=4,
        total=21,
        fps=9.5,
        inference_ms=7.25,
        store="ok",
        input_down_s=0.0,
        **{"in": 9, "out": 5},
    )
    assert value(samples, "peoplecounter_people_in_view") == 4
    assert value(samples, "peoplecounter_occupancy") == 4
    assert value(samples, "peoplecounter_fps") == 9.5
    assert value(samples, "peoplecounter_input_up") == 1
    assert value(samples, "peoplecounter_input_down_seconds") == 0
    assert value(samples, "peoplecounter_store_ok") == 1
    assert value(samples, "peoplecounter_state_fresh") == 1
    assert 0 <= (value(samples, "peoplecounter_state_age_seconds") or -1) < 5
    assert value(samples, "peoplecounter_dashboard_mqtt_connected") == 1
    assert value(samples, "peoplecounter_device_available") == 1
    assert value(samples, "peoplecounter_stream_up") == 0
    assert value(samples, "peoplecounter_build_info", version=__version__) == 1
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
    assert (value(samples, "process_open_fds") or 0) > 0
    # The old names are gone: a gauge ending in _total, a name ending in the reserved _count.
    names = {name for name, _ in samples}
    assert not {"people_counter_total", "people_counter_count", "people_counter_inference_ms"} & names
    assert not [name for name in names if name.startswith("people_counter_")]


def test_counters_never_go_down_across_a_daily_reset(dashboard: DashboardProcess, counter: CounterPublisher) -> None:
    def totals(samples: Samples) -> tuple[float, float, float, float]:
        return (
            value(samples, "peoplecounter_entries_total") or 0.0,
            value(samples, "peoplecounter_line_crossings_total", direction="in") or 0.0,
            value(samples, "peoplecounter_line_crossings_total", direction="out") or 0.0,
            value(samples, "peoplecounter_dropped_frames_total") or 0.0,
        )

    # The counter's figures: a rise, the daily reset (dropped frames reset as on a restart), a rise.
    steps = [
        {"total": 30, "in": 10, "out": 4, "dropped_frames": 3},
        {"total": 39, "in": 15, "out": 6, "dropped_frames": 5},
        {"total": 2, "in": 1, "out": 0, "dropped_frames": 0},
        {"total": 5, "in": 3, "out": 1, "dropped_frames": 1},
    ]
    seen = [totals(publish_state(dashboard, counter, **steps[0]))]
    for figures in steps[1:]:
        seen.append(totals(publish_state(dashboard, counter, **figures)))
    gains = [tuple(b - a for a, b in zip(before, after, strict=True)) for before, after in itertools.pairwise(seen)]
    # Each rise adds its difference; after the reset, the new figures are all new.
    assert gains == [(9, 5, 2, 2), (2, 1, 0, 0), (3, 2, 1, 1)]


def test_histograms_observe_each_state_and_each_exit(dashboard: DashboardProcess, counter: CounterPublisher) -> None:
    def counts(samples: Samples) -> dict[str, float]:
        return {
            "inference": value(samples, "peoplecounter_inference_seconds_count") or 0.0,
            "inference_sum": value(samples, "peoplecounter_inference_seconds_sum") or 0.0,
            "inference_le_0.01": value(samples, "peoplecounter_inference_seconds_bucket", le="0.01") or 0.0,
            "inference_le_0.05": value(samples, "peoplecounter_inference_seconds_bucket", le="0.05") or 0.0,
            "visit": value(samples, "peoplecounter_visit_seconds_count") or 0.0,
            "visit_sum": value(samples, "peoplecounter_visit_seconds_sum") or 0.0,
            "visit_le_20": value(samples, "peoplecounter_visit_seconds_bucket", le="20.0") or 0.0,
        }

    before = counts(scrape(dashboard))
    for inference_ms in (7.25, 40.0, 120.0):
        publish_state(dashboard, counter, inference_ms=inference_ms)
    publish_event(counter, "enter", 3.0)  # an enter is no visit, whatever it carries
    publish_event(counter, "exit", None)
    publish_event(counter, "exit", 12.5)
    publish_event(counter, "exit", 75.0)
    after = counts(scrape_until(dashboard, lambda s: counts(s)["visit"] >= before["visit"] + 2))
    gain = {key: round(after[key] - before[key], 6) for key in before}
    assert gain == {
        "inference": 3,
        "inference_sum": 0.16725,
        "inference_le_0.01": 1,
        "inference_le_0.05": 2,
        "visit": 2,
        "visit_sum": 87.5,
        "visit_le_20": 1,
    }
    # The retained state heard again (as after a reconnect) is a message, not a new observation.
    ts = time.time()
    publish_state(dashboard, counter, inference_ms=9.0, ts=ts)
    publish_state(dashboard, counter, inference_ms=9.0, ts=ts)
    assert counts(scrape(dashboard))["inference"] == after["inference"] + 1


def test_no_frames_reads_fps_0_and_input_down(dashboard: DashboardProcess, counter: CounterPublisher) -> None:
    samples = publish_state(dashboard, counter, input="reconnecting", fps=10.59, input_down_s=12.0, store="degraded")
    assert value(samples, "peoplecounter_fps") == 0
    assert value(samples, "peoplecounter_input_up") == 0
    assert value(samples, "peoplecounter_input_down_seconds") == 12
    assert value(samples, "peoplecounter_store_ok") == 0
    # An older counter sends neither field: the store is unknown, not ok.
    samples = publish_state(dashboard, counter, input="ok", fps=10.0)
    assert value(samples, "peoplecounter_fps") == 10 and value(samples, "peoplecounter_input_up") == 1
    assert value(samples, "peoplecounter_store_ok") is None
    # A state older than stale_after_s: the counter is not counting, whatever fps it last said.
    samples = publish_state(dashboard, counter, input="ok", fps=10.0, ts=time.time() - 2 * STALE_AFTER_S)
    assert value(samples, "peoplecounter_fps") == 0 and value(samples, "peoplecounter_state_fresh") == 0


def test_a_bearer_token_guards_metrics(broker: MosquittoBroker) -> None:
    with short_tmp() as run:
        token_file = run / "metrics.token"
        token_file.write_text(TOKEN + "\n")
        extra = {"metrics": {"token_file": str(token_file)}}
        with DashboardProcess(run, broker, run / "no-encoder.sock", device_id=DEVICE, extra=extra) as guarded:
            status, headers, _ = get_metrics(guarded.url, {})
            assert status == 401 and headers["www-authenticate"] == "Bearer"
            for wrong in ("Bearer wrong", "Basic " + TOKEN, "Bearer " + TOKEN + "x", TOKEN):
                assert get_metrics(guarded.url, {"Authorization": wrong})[0] == 401, wrong
            status, _, body = get_metrics(guarded.url, {"Authorization": "Bearer " + TOKEN})
            assert status == 200 and "peoplecounter_build_info" in body


def test_an_unreadable_or_empty_token_file_is_one_line_and_exit_2(dashboard: DashboardProcess, tmp_path: Path) -> None:
    (tmp_path / "empty.token").write_text("\n")
    for name, problem in (("missing.token", "cannot read"), ("empty.token", "is empty")):
        config = yaml.safe_load(dashboard.config_path.read_text())
        config["metrics"] = {"token_file": str(tmp_path / name)}
        path = tmp_path / "dashboard.yml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.run(
            [sys.executable, "-m", "people_counter.dashboard.cli", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert "metrics.token_file: " in proc.stderr and problem in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
