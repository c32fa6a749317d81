"""Placing the counting line on the live image, in a real browser (Debian's chromium through
Playwright), with the real counter on the sample video, Mosquitto, the encoder and the dashboard.

The expectations come from the scene, not from the counter: the sample (PETS09-S2L1) shows a
paved square that people cross from one side to the other, with a lawn below; nobody walks on
the lawn's bottom-left corner. The counter starts with its line there, so it counts no crossing.
The operator drags the line's ends to a vertical line through the middle of the picture and
saves: people crossing the square cross it, and in + out grow, with the counts so far kept.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from counter_process import CounterProcess, make_state_dir, write_config
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from people_counter.counting.line_override import read_line_override
from people_counter.paths import database_path
from testsupport.live_stack import LivePair, StreamProcess, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.model,
    pytest.mark.browser,
    pytest.mark.broker,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]

LAWN_CORNER = ((0.03, 0.85), (0.17, 0.97))
"""Bottom-left lawn: nobody's feet get there in the sample."""
ACROSS_THE_SQUARE = ((0.5, 0.02), (0.5, 0.98))
"""Vertical, through the middle: everyone walking across the square crosses it."""


def test_a_line_dragged_on_the_live_image_counts_the_people_crossing_it(
    sample_video: Path, default_model_xml: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with short_tmp() as run, MosquittoBroker(devices=("door",)) as broker:
        state = make_state_dir(run, default_model_xml)
        (run / "line").mkdir()  # the role makes it: the dashboard's user writes, the counter's reads
        override = run / "line" / "counting-line.yml"
        password = run / "counter.pw"
        password.write_text(broker.users["counter"])
        config = write_config(
            run / "config.yml",
            {
                "device_id": "door",
                "state_dir": str(state),
                "input": {"source": str(sample_video), "loop": True},
                "counting": {"line": [list(p) for p in LAWN_CORNER], "override_file": str(override)},
                "mqtt": {"port": broker.port, "username": "counter", "password_file": str(password)},
                "stream": StreamProcess.stream_section(run),
            },
        )
        editor = {"override_file": str(override), "counter_config": str(config)}
        live = LivePair(
            run,
            broker,
            device_id="door",
            config_path=config,
            database=database_path(state),
            extra={"line_editor": editor},
        )
        with live as pair, sync_playwright() as playwright:
            counter = CounterProcess(config)
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            name, _, value = pair.login().partition("=")
            context.add_cookies([{"name": name, "value": value, "url": pair.url}])
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
            try:
                page.goto(pair.url + "/")
                # The counter is up (its model compiled) once its figures and frames arrive.
                page.wait_for_selector("#video-off", state="hidden", timeout=90000)
                expect(page.locator("#live-text")).to_have_text("Live", timeout=30000)
                expect(page.locator("#in")).to_have_text("0")
                expect(page.locator("#out")).to_have_text("0")

                # The editor opens on the counter's line, from its config.
                page.click("#line-edit")
                page.wait_for_selector("#line-end-2")
                picture = page.locator("#line-editor").bounding_box()
                assert picture is not None

                def at(point: tuple[float, float]) -> tuple[float, float]:
                    return picture["x"] + point[0] * picture["width"], picture["y"] + point[1] * picture["height"]

                for end, point in enumerate(LAWN_CORNER, start=1):
                    box = page.locator(f"#line-end-{end}").bounding_box()
                    assert box is not None
                    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                    assert centre == pytest.approx(at(point), abs=2.0)

                # Drag each end to its new place, and save.
                for start, target in zip(LAWN_CORNER, ACROSS_THE_SQUARE, strict=True):
                    page.mouse.move(*at(start))
                    page.mouse.down()
                    page.mouse.move(*at(target), steps=8)
                    page.mouse.up()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "line-editor.png"))
                total_before = int(page.inner_text("#total"))
                with page.expect_request(lambda r: r.method == "POST") as posted:
                    page.click("#line-save")
                expect(page.locator("#line-msg")).to_contain_text("Line saved")
                assert page.is_hidden("#line-editor")
                assert posted.value.all_headers()["origin"] == pair.url  # what auth.same_origin_posts checks

                saved = read_line_override(override)
                for got, want in zip(saved, ACROSS_THE_SQUARE, strict=True):
                    assert got == pytest.approx(want, abs=2.0 / picture["width"])
                assert counter.wait_until(lambda: "counting line from" in counter.log(), 30), counter.log()[-3000:]

                # People crossing the square cross the new line; nothing was reset or restarted.
                deadline = time.monotonic() + 180  # for failing only: the video loops every 80 s
                while int(page.inner_text("#in")) + int(page.inner_text("#out")) == 0:
                    assert time.monotonic() < deadline, "no crossing of the new line:\n" + counter.log()[-3000:]
                    page.wait_for_timeout(500)
                assert int(page.inner_text("#total")) >= total_before
                assert counter.process.poll() is None  # the same process: applied without a restart
                assert not problems, problems
            finally:
                browser.close()
                counter.terminate()
                counter.wait(15)
                counter.close()
