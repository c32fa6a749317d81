"""The fleet page on the central host (issue 14), provisioned by site.yml for the central_broker
group: it runs hardened as its own user, its MQTT user may only read, and Debian's Chromium on the
controller logs in over HTTPS (the host's self-signed certificate, accepted by its SPKI hash
alone) and sees both edge devices online with live figures. A device whose counter stops, or
whose Mosquitto (its bridge) stops, shows offline within 10 s; each comes back online after.
A device whose link goes silent (its Mosquitto frozen: no packet and no close, as when it loses
power) shows offline once the central broker's keepalive check drops the bridge."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    FLEET,
    MOSQUITTO,
    TARGET,
    Node,
    exposure,
    publish_refused,
)
from testsupport.browser import CHROMIUM, CHROMIUM_ARGS, accept_only

FLEET_USER = "people-counter-fleet"
FLEET_PORT = 9443
FLEET_CERT = "/etc/people-counter/tls/fleet.crt"
OFFLINE_WITHIN_S = 10  # the figure: a stopped device shows offline within this
# A frozen link: 1.5 x the bridge keepalive (5 s, Mosquitto's least), plus the broker's check.
SILENT_LINK_OFFLINE_WITHIN_S = 15
BACK_ONLINE_WITHIN_S = 90

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@pytest.fixture
def page(central: Node) -> Iterator[Any]:
    """A Chromium page logged in to the fleet page (the password the roles keep on the controller)."""
    from playwright.sync_api import sync_playwright

    accept = accept_only(central.check(f"cat {FLEET_CERT}").encode())
    base = f"https://{central.address}:{FLEET_PORT}"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, accept]
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(base + "/")
            assert page.url.endswith("/login"), page.url
            page.fill("#password", central.secret("fleet-password"))
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            yield page
        finally:
            browser.close()


def _row(page: Any, device: Node) -> Any:
    return page.locator(f'tr[data-device="{device.name}"]')


def _offline_within(page: Any, device: Node, within_s: float) -> float:
    """Seconds until the device's row says offline, failing past within_s."""
    from playwright.sync_api import expect

    started = time.monotonic()
    expect(_row(page, device).locator(".status")).to_have_text(
        "offline", timeout=within_s * 1000
    )
    return time.monotonic() - started


def _back_online(page: Any, device: Node) -> None:
    from playwright.sync_api import expect

    expect(_row(page, device).locator(".status")).to_have_text(
        "online", timeout=BACK_ONLINE_WITHIN_S * 1000
    )


@pytest.mark.units(FLEET)
def test_the_fleet_page_runs_hardened_as_its_own_user(central: Node) -> None:
    props = central.show(
        FLEET, "ActiveState", "UnitFileState", "Type", "User", "StateDirectory"
    )
    assert props == {
        "ActiveState": "active",
        "UnitFileState": "enabled",
        "Type": "notify",
        "User": FLEET_USER,
        "StateDirectory": "people-counter-fleet",
    }
    unit = central.check(f"systemctl cat {FLEET}")
    for credential in ("mqtt-password", "password-hash", "tls-key"):
        assert f"LoadCredential={credential}:" in unit
    # Secrets are root's; the page's config holds none and is its user's alone.
    assert central.check(
        "stat -c '%U %a' /etc/people-counter/fleet.yml /etc/people-counter/credentials "
        "/etc/people-counter/tls/fleet.key"
    ).split("\n")[:3] == [f"{FLEET_USER} 400", "root 700", "root 600"]
    config = central.check("cat /etc/people-counter/fleet.yml")
    assert "scrypt$" not in config and "password_hash:" not in config
    assert central.check("readlink /opt/people-counter/current").startswith("releases/")
    assert exposure(central, FLEET) <= 1.5


@pytest.mark.units(MOSQUITTO, FLEET)
def test_the_fleet_pages_mqtt_user_may_only_read(central: Node) -> None:
    password = central.mqtt_password(FLEET_USER)
    assert publish_refused(
        central, "people_counter/edge-forged/state", FLEET_USER, password
    ), "the fleet page's user published"
    sub = central.mqtt_sub(
        "people_counter/+/available", FLEET_USER, password, wait_s=4, retained_only=True
    )
    assert sub.rc == 0 and "online" in sub.stdout, sub.stderr


@pytest.mark.units(FLEET)
def test_both_devices_live_then_stopped_ones_offline_within_10_s(
    page: Any, central: Node, devices: list[Node]
) -> None:
    from playwright.sync_api import expect

    for device in devices:
        _back_online(page, device)
        expect(_row(page, device).locator(".count")).not_to_have_text("")
    expect(page.locator("#online-text")).to_have_text(
        f"{len(devices)} of {len(devices)} online", timeout=30_000
    )
    # Live: the sample video loops, so each device's total moves without a reload.
    for device in devices:
        total = _row(page, device).locator(".total")
        before = total.inner_text()
        expect(total).not_to_have_text(before, timeout=60_000)

    edge, other = devices[-1], devices[0]
    took: dict[str, float] = {}
    # The counter stops: its `offline` (said on SIGTERM, or its Last Will) reaches the page.
    edge.check(f"systemctl stop {TARGET}")
    try:
        took["counter stopped"] = _offline_within(page, edge, OFFLINE_WITHIN_S)
        expect(_row(page, other).locator(".status")).to_have_text("online")
    finally:
        edge.check(f"systemctl start {TARGET}")
    _back_online(page, edge)

    # The device's Mosquitto stops: its counter's retained `online` stays on the central broker,
    # and the bridge's Last Will there (`0` on people_counter/<device>/bridge) says offline.
    edge.check(f"systemctl stop {MOSQUITTO}")
    try:
        took["bridge stopped"] = _offline_within(page, edge, OFFLINE_WITHIN_S)
    finally:
        edge.check(f"systemctl start {MOSQUITTO}")
    _back_online(page, edge)
    expect(page.locator("#online-text")).to_have_text(
        f"{len(devices)} of {len(devices)} online", timeout=30_000
    )
    print(f"offline on the page after: {took}")


@pytest.mark.units(MOSQUITTO, FLEET)
def test_a_device_whose_link_goes_silent_shows_offline(
    page: Any, central: Node, devices: list[Node]
) -> None:
    edge = devices[-1]
    _back_online(page, edge)
    pid = edge.main_pid(MOSQUITTO)
    # Frozen: the link neither speaks nor closes, as with a device that lost power.
    edge.check(f"kill -STOP {pid}")
    try:
        took = _offline_within(page, edge, SILENT_LINK_OFFLINE_WITHIN_S)
    finally:
        edge.check(f"kill -CONT {pid}")
    _back_online(page, edge)
    print(f"a silent link is offline on the page after {took:.1f} s")
    assert (
        edge.check(f"systemctl is-active {shlex.quote(MOSQUITTO)}").strip() == "active"
    )
