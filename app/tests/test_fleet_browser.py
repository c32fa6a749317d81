"""The fleet page in a real browser (Debian's chromium through Playwright): two simulated devices
live, then one offline when its availability says so. Screenshots go to artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from testsupport.fleet_stack import DeviceClient, FleetProcess, SimDevice
from testsupport.live_stack import short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = [
    pytest.mark.browser,
    pytest.mark.broker,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto"),
]


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def test_two_devices_live_then_one_offline(page: object) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))  # type: ignore[attr-defined]
    page.on(  # type: ignore[attr-defined]
        "console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None
    )
    with MosquittoBroker() as broker, short_tmp() as run, FleetProcess(run, broker) as fleet:
        door, till = SimDevice("shop-door"), SimDevice("shop-till")
        with DeviceClient(broker, door) as a, DeviceClient(broker, till) as b:
            for client, people in ((a, 2), (b, 1)):
                client.online()
                for _ in range(people):
                    client.publish_event(client.device.enter(time.time()))
                client.publish_state()

            page.goto(fleet.url + "/")  # type: ignore[attr-defined]
            assert page.url.endswith("/login")  # type: ignore[attr-defined]
            page.fill("#password", fleet.password)  # type: ignore[attr-defined]
            page.click("button[type=submit]")  # type: ignore[attr-defined]
            page.wait_for_url(fleet.url + "/")  # type: ignore[attr-defined]

            door_row = page.locator('tr[data-device="shop-door"]')  # type: ignore[attr-defined]
            till_row = page.locator('tr[data-device="shop-till"]')  # type: ignore[attr-defined]
            expect(door_row.locator(".status")).to_have_text("online", timeout=10000)
            expect(till_row.locator(".status")).to_have_text("online", timeout=10000)
            expect(door_row.locator(".count")).to_have_text("2")
            expect(page.locator("#f-count")).to_have_text("3")  # type: ignore[attr-defined]
            expect(page.locator("#online-text")).to_have_text("2 of 2 online")  # type: ignore[attr-defined]

            # Live: a new figure shows without a reload.
            b.publish_event(till.enter(time.time()))
            b.publish_state()
            expect(till_row.locator(".count")).to_have_text("2", timeout=10000)
            page.screenshot(path=str(ARTIFACTS / "fleet.png"))  # type: ignore[attr-defined]

            # The till's counter stops: its Last Will says offline.
            b.kill()
            expect(till_row.locator(".status")).to_have_text("offline", timeout=10000)
            expect(door_row.locator(".status")).to_have_text("online")
            expect(page.locator("#online-text")).to_have_text("1 of 2 online")  # type: ignore[attr-defined]
            expect(page.locator("#f-count")).to_have_text("2")  # type: ignore[attr-defined]

            # A device's history: click its row.
            door_row.click()
            expect(page.locator("#chart-device")).to_have_text("shop-door")  # type: ignore[attr-defined]
            page.wait_for_selector("#chart svg path.people-line", state="attached")  # type: ignore[attr-defined]
            href = page.get_attribute("#csv-link", "href")  # type: ignore[attr-defined]
            assert href == "/api/history.csv?device=shop-door&range=hour"
            page.screenshot(path=str(ARTIFACTS / "fleet-offline.png"))  # type: ignore[attr-defined]
    assert not problems, problems
