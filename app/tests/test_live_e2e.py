"""The whole device on loopback: the real counter, Mosquitto, the pinned ffmpeg and the dashboard.

The encoder is stopped (SIGSTOP) mid-run: the counter keeps its pace and drops
stream frames instead of waiting; resumed, the video comes back by itself.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from counter_process import CounterProcess, make_state_dir, read_results, write_config

from people_counter.paths import database_path
from testsupport.live_stack import LivePair, MjpegViewer, StreamProcess, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = pytest.mark.model


def frames_in(results: Path, seconds: float) -> int:
    before = len(read_results(results))
    time.sleep(seconds)
    return len(read_results(results)) - before


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")
def test_real_counter_feeds_the_dashboard_and_never_waits_for_the_encoder(
    sample_video: Path, default_model_xml: Path
) -> None:
    with short_tmp() as run, MosquittoBroker(devices=("door",)) as broker:
        state = make_state_dir(run, default_model_xml)
        password = run / "counter.pw"
        password.write_text(broker.users["counter"])
        config = write_config(
            run / "config.yml",
            {
                "device_id": "door",
                "state_dir": str(state),
                "input": {"source": str(sample_video), "loop": True},
                "mqtt": {"port": broker.port, "username": "counter", "password_file": str(password)},
                "stream": StreamProcess.stream_section(run),
            },
        )
        results = run / "results.jsonl"
        live = LivePair(run, broker, device_id="door", config_path=config, database=database_path(state))
        with live as pair:
            counter = CounterProcess(config, "--results", str(results))
            try:
                cookie = pair.login()
                viewer = MjpegViewer(pair.url, cookie)
                try:
                    deadline = time.monotonic() + 60
                    while len(viewer.received) < 10 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert len(viewer.received) >= 10, counter.log()[-2000:] + pair.stream.log()[-2000:]

                    status, _, body = pair.get("/api/state", cookie)
                    assert status == 200
                    figures = json.loads(body)
                    assert figures["state"]["privacy_blur"] is True

                    paced = frames_in(results, 3.0)
                    pair.stream.signal(signal.SIGSTOP)
                    try:
                        time.sleep(1.0)  # let the socket buffers fill
                        stalled = frames_in(results, 3.0)
                        seen_while_stopped = len(viewer.received)
                    finally:
                        pair.stream.signal(signal.SIGCONT)
                    # At the video's own 10 fps, the count goes on at the same pace with the encoder frozen.
                    assert stalled >= 0.8 * paced and stalled >= 20, (paced, stalled)
                    deadline = time.monotonic() + 20
                    while len(viewer.received) < seen_while_stopped + 10 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert len(viewer.received) >= seen_while_stopped + 10, "the video did not come back"
                    status, _, body = pair.get("/api/state", cookie)
                    assert json.loads(body)["state"]["stream_dropped"] > 0
                finally:
                    viewer.close()
                status, _, body = pair.get("/healthz")
                assert status == 200, body
            finally:
                counter.terminate()
                counter.wait(10)
                counter.close()
