"""A real browser (Debian's chromium through Playwright) on the real dashboard, encoder and Mosquitto.

The test plays the counter: annotated frames of the sample video go through a FrameSink,
and figures and alerts are published to Mosquitto. Screenshots go to artifacts/.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from people_counter import paths
from people_counter.outputs.annotate import annotate_frame
from people_counter.outputs.frame_sink import FrameSink
from people_counter.stage_data import CounterState, PersonTrack
from testsupport.browser import CHROMIUM, CHROMIUM_ARGS
from testsupport.live_stack import CounterPublisher, LivePair, populate_history, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
DEVICE = "shop-door-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.broker,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]


class FakeCounterVideo:
    """Annotated frames at 10 fps, from the sample video when it is cached, else a moving pattern."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink
        self.stop = threading.Event()
        self.frames = self._frames()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _frames() -> list[np.ndarray]:
        import cv2

        video = paths.sample_video_path()
        frames: list[np.ndarray] = []
        if video.exists():
            cap = cv2.VideoCapture(str(video))
            while len(frames) < 120:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
            cap.release()
        if not frames:
            for i in range(60):
                frame = np.zeros((576, 768, 3), np.uint8)
                frame[:, :, 1] = np.linspace(40, 160, 768, dtype=np.uint8)[None, :]
                cv2.circle(frame, (100 + i * 9, 300), 40, (200, 200, 255), -1)
                frames.append(frame)
        return frames

    def _run(self) -> None:
        i = 0
        # Two boxes walking across the picture, so ids, boxes and blur show in screenshots.
        while not self.stop.is_set():
            frame = self.frames[i % len(self.frames)]
            x = 80 + (i * 4) % 560
            tracks = [
                PersonTrack(41, (float(x), 220.0, x + 48.0, 340.0), 0.0),
                PersonTrack(42, (620.0 - x / 2, 120.0, 660.0 - x / 2, 220.0), 0.0),
            ]
            state = CounterState(2, 57, 23, 19, 41.0, 10.0, 8.1, 0, "ok", 3600.0, time.time())
            self.sink.offer(annotate_frame(frame, tracks, ((0, 300), (768, 260)), state, True, 768))
            i += 1
            time.sleep(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[MosquittoBroker, LivePair, CounterPublisher]]:
    with short_tmp() as run, MosquittoBroker() as broker:
        database = populate_history(run / "state", hours=7 * 24 if _full_history() else 26)
        with LivePair(run, broker, device_id=DEVICE, database=database, stale_after_s=4.0) as pair:
            sink = FrameSink(pair.frame_socket, 10.0)
            video = FakeCounterVideo(sink)
            with CounterPublisher(broker, DEVICE) as counter:
                counter.available("online")
                counter.state(count=2, total=57, **{"in": 23, "out": 19}, avg_duration_s=41.0)
                try:
                    yield broker, pair, counter
                finally:
                    video.close()
                    sink.close()


def _full_history() -> bool:
    return False  # a week of minutes takes ~5 s to write; a day shows the charts as well


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _digest(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()


def test_wrong_password_gets_401_and_no_video(
    setup: tuple[MosquittoBroker, LivePair, CounterPublisher], browser: object
) -> None:
    _, pair, _ = setup
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    try:
        page.goto(pair.url + "/")
        assert page.url.endswith("/login")
        page.screenshot(path=str(ARTIFACTS / "login.png"))
        page.fill("#password", "not-the-password")
        with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as info:
            page.click("button[type=submit]")
        assert info.value.status == 401
        assert "Wrong password" in page.inner_text(".error")
        page.screenshot(path=str(ARTIFACTS / "login-wrong.png"))
        video = page.request.get(pair.url + "/video.mjpg")
        assert video.status == 401
    finally:
        page.close()


def test_dashboard_live_video_figures_alerts_and_stale_banner(
    setup: tuple[MosquittoBroker, LivePair, CounterPublisher], browser: object
) -> None:
    from playwright.sync_api import expect

    broker, pair, counter = setup
    context = browser.new_context(viewport={"width": 1600, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(pair.url + "/login")
        page.fill("#password", pair.dashboard.password)
        page.click("button[type=submit]")
        page.wait_for_url(pair.url + "/")
        cookie = next(c for c in context.cookies() if c["name"] == "pc_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # The video plays: the picture changes from one moment to the next.
        page.wait_for_selector("#video-off", state="hidden", timeout=10000)
        # (wait_for_function would need 'unsafe-eval', which the page's CSP rightly refuses)
        deadline = time.monotonic() + 10
        while page.evaluate("document.getElementById('video').naturalWidth") == 0:
            assert time.monotonic() < deadline, "no video frame decoded"
            page.wait_for_timeout(100)
        first = _digest(page.locator("#video").screenshot())
        deadline = time.monotonic() + 10
        while _digest(page.locator("#video").screenshot()) == first:
            assert time.monotonic() < deadline, "the video did not change"
            page.wait_for_timeout(200)

        # Figures follow a published state (pushed to the page; the timeouts are for failing only).
        expect(page.locator("#total")).to_have_text("57", timeout=5000)
        counter.state(count=4, total=58, **{"in": 24, "out": 19}, avg_duration_s=42.5)
        expect(page.locator("#count")).to_have_text("4", timeout=10000)
        expect(page.locator("#total")).to_have_text("58", timeout=10000)
        assert page.inner_text("#privacy-text") == "Privacy blur on"
        assert page.inner_text("#live-text") == "Live"
        assert page.is_hidden("#stale-banner")
        page.wait_for_selector("#chart svg path.people-line", timeout=5000)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        page.set_viewport_size({"width": 1920, "height": 1080})  # a shop screen
        page.wait_for_timeout(400)
        page.screenshot(path=str(ARTIFACTS / "dashboard-1080p.png"))
        page.set_viewport_size({"width": 1600, "height": 1000})

        # An alert appears as it happens.
        counter.alert("occupancy", 12, 10)
        page.wait_for_selector("#alerts-list li.alert.occupancy.new", timeout=3000)
        assert "12 people in view (limit 10)" in page.inner_text("#alerts-list")
        assert page.is_visible("#toast")
        page.screenshot(path=str(ARTIFACTS / "dashboard-alert.png"))

        # Week view and CSV export from the page.
        page.click("button.tab[data-range=week]")
        page.wait_for_timeout(500)
        with page.expect_download() as download_info:
            page.click("#csv-link")
        csv_path = download_info.value.path()
        assert Path(csv_path).read_text().startswith("minute_utc,")

        # The broker stops: the stale banner appears and the figures stay on screen.
        broker.stop()
        try:
            page.wait_for_selector("#stale-banner", state="visible", timeout=6000)
            assert "broker" in page.inner_text("#stale-banner")
            assert page.inner_text("#count") == "4"
            page.screenshot(path=str(ARTIFACTS / "dashboard-stale.png"))
        finally:
            broker.start()
        counter.client.reconnect()
        counter.state(count=3, total=58)
        page.wait_for_selector("#stale-banner", state="hidden", timeout=15000)

        # The encoder goes away: "video unavailable", figures still live.
        pair.stream.stop()
        page.wait_for_selector("#video-off", state="visible", timeout=6000)
        counter.state(count=6, total=60)
        expect(page.locator("#count")).to_have_text("6", timeout=3000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-video-down.png"))

        # Narrow screen (a phone at the door).
        page.set_viewport_size({"width": 420, "height": 900})
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "dashboard-narrow.png"), full_page=True)
        assert not problems, problems  # no script errors, nothing the page's own CSP refused
    finally:
        context.close()
