"""The fleet page with real pieces on loopback: Mosquitto, simulated devices speaking the contract,
people-counter-fleet as its own process. Waits are for failing only: every assertion waits for an
event (an SSE message, a row), never for a span of wall-clock time."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.fleet_stack import DeviceClient, FleetProcess, SimDevice
from testsupport.live_stack import SseClient, short_tmp
from testsupport.mosquitto_broker import MosquittoBroker, mosquitto_available

pytestmark = [pytest.mark.broker, pytest.mark.skipif(not mosquitto_available(), reason="needs mosquitto")]


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    with MosquittoBroker() as b:
        yield b


@pytest.fixture(scope="module")
def fleet(broker: MosquittoBroker) -> Iterator[FleetProcess]:
    with short_tmp() as run, FleetProcess(run, broker) as f:
        yield f


@pytest.fixture(scope="module")
def cookie(fleet: FleetProcess) -> str:
    return fleet.cookie()


def row_of(device: str, data: dict[str, Any]) -> dict[str, Any] | None:
    return next((row for row in data.get("devices", []) if row["device"] == device), None)


def wait_row(sse: SseClient, device: str, check: Any, timeout: float = 10.0) -> dict[str, Any]:
    found = sse.wait_for(lambda _name, data: (row := row_of(device, data)) is not None and check(row), timeout)
    assert found is not None, f"no update of {device} as expected in {sse.events[-3:]}"
    row = row_of(device, found[1])
    assert row is not None
    return row


def test_login_is_required(fleet: FleetProcess) -> None:
    status, headers, _ = fleet.request("GET", "/")
    assert status == 303 and headers["location"] == "/login"
    for path in ("/events", "/api/devices", "/api/history?device=all", "/api/history.csv?device=all"):
        assert fleet.request("GET", path)[0] == 401, path
    status, set_cookie = fleet.login("wrong")
    assert status == 401 and not set_cookie
    assert fleet.request("GET", "/healthz")[0] == 200  # for probes, no login


def test_sse_shows_a_device_live_and_offline_by_its_last_will(
    broker: MosquittoBroker, fleet: FleetProcess, cookie: str
) -> None:
    sse = SseClient(fleet.url, cookie)
    try:
        assert sse.status == 200
        device = SimDevice("will-1")
        client = DeviceClient(broker, device)
        client.online()
        client.publish_event(device.enter(time.time()))
        client.publish_event(device.enter(time.time()))
        state = client.publish_state()
        row = wait_row(sse, "will-1", lambda r: r["count"] == 2 and r["status"] == "online")
        assert (row["total"], row["in"], row["ts"]) == (2, 2, state["ts"])
        client.kill()  # no DISCONNECT: the broker publishes the will, `offline`
        row = wait_row(sse, "will-1", lambda r: r["status"] == "offline")
        assert row["available"] == "offline" and row["last_seen"] is not None
    finally:
        sse.close()


def test_available_offline_and_open_alerts(broker: MosquittoBroker, fleet: FleetProcess, cookie: str) -> None:
    sse = SseClient(fleet.url, cookie)
    device = SimDevice("alert-1")
    try:
        with DeviceClient(broker, device) as client:
            client.online()
            client.publish_alert(device.alert(time.time()))
            client.publish_state()
            row = wait_row(sse, "alert-1", lambda r: r["alerts"])
            assert row["alerts"][0]["type"] == "occupancy" and row["alerts"][0]["value"] == 12
            device.occupancy_alert = False
            client.publish_state()
            wait_row(sse, "alert-1", lambda r: r["alerts"] == [])
            client.offline()
            wait_row(sse, "alert-1", lambda r: r["status"] == "offline")
    finally:
        sse.close()


def test_history_and_csv_from_the_bridged_messages(broker: MosquittoBroker, fleet: FleetProcess, cookie: str) -> None:
    now = time.time()
    devices = [SimDevice("hist-a"), SimDevice("hist-b")]
    with DeviceClient(broker, devices[0]) as a, DeviceClient(broker, devices[1]) as b:
        for client, entries in ((a, 3), (b, 1)):
            for _ in range(entries):
                client.publish_event(client.device.enter(now))
            client.publish_state(now)
        a.publish_event(devices[0].leave(now + 1))
        a.publish_state(now + 1)

    def csv_rows(device: str) -> list[dict[str, str]]:
        """The CSV's rows; none while the page has not heard of the device yet (404)."""
        status, _, body = fleet.request("GET", f"/api/history.csv?device={device}&range=hour", cookie)
        assert status in (200, 404)
        return list(csv.DictReader(io.StringIO(body.decode()))) if status == 200 else []

    # The history is written every flush_interval_s: wait for the rows, then check them.
    deadline = time.monotonic() + 10
    while sum(int(r["entries"]) for r in csv_rows("hist-a")) < 3 or not csv_rows("hist-b"):
        assert time.monotonic() < deadline, "the history rows never came"
        time.sleep(0.1)
    rows_a = csv_rows("hist-a")
    assert sum(int(r["entries"]) for r in rows_a) == 3 and sum(int(r["exits"]) for r in rows_a) == 1
    assert {r["device"] for r in rows_a} == {"hist-a"}
    fleet_rows = csv_rows("all")
    assert {r["device"] for r in fleet_rows} == {"all"}
    assert sum(int(r["entries"]) for r in fleet_rows) >= 4  # other tests' devices count too

    status, history = fleet.get_json("/api/history?device=hist-b&range=hour", cookie)
    assert status == 200 and history["device"] == "hist-b"
    assert sum(p["entries"] or 0 for p in history["points"]) == 1
    _, headers, _ = fleet.request("GET", "/api/history.csv?device=hist-a&range=day", cookie)
    assert headers["content-disposition"] == 'attachment; filename="people-hist-a-day.csv"'
    assert fleet.request("GET", "/api/history.csv?device=nobody", cookie)[0] == 404
    assert fleet.request("GET", "/api/history?device=all&range=year", cookie)[0] == 400


def test_a_page_opened_later_gets_the_retained_figures(broker: MosquittoBroker, cookie: str) -> None:
    device = SimDevice("early-1")
    with DeviceClient(broker, device) as client:
        client.online()
        client.publish_event(device.enter(time.time()))
        client.publish_state()
    # A fresh page: it learns of the device from the broker's retained state and availability.
    with short_tmp() as run, FleetProcess(run, broker) as late:
        sse = SseClient(late.url, late.cookie())
        try:
            row = wait_row(sse, "early-1", lambda r: r.get("count") == 1)
            assert row["available"] == "online"
        finally:
            sse.close()


def test_https_and_a_secure_cookie(tmp_path: Path) -> None:
    with MosquittoBroker(tls=True) as broker, short_tmp() as run:
        tls = (broker.dir / "server.crt", broker.dir / "server.key", broker.ca_file)
        with FleetProcess(run, broker, tls=tls) as fleet:
            assert fleet.url.startswith("https://")
            assert fleet.request("GET", "/healthz")[0] == 200
            status, set_cookie = fleet.login()
            assert status == 303 and "Secure" in set_cookie and "HttpOnly" in set_cookie


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "people_counter.fleet.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_and_version(tmp_path: Path, fleet: FleetProcess) -> None:
    ok = run_cli("check-config", str(fleet.config_path))
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": ok")
    bad = tmp_path / "fleet.yml"
    bad.write_text("auth: {password_hash: 'scrypt$1$2$3$4$5'}\nretention_days: 0\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "retention_days" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli("-c", str(tmp_path / "nothing.yml"))
    assert missing.returncode == 2 and "no such config file" in missing.stderr and missing.stderr.count("\n") == 1
    config = fleet.config_path.read_text().replace(str(fleet.config_path.parent / "fleet-mqtt.pw"), "/nonexistent/pw")
    no_password = tmp_path / "no-password.yml"
    no_password.write_text(config.replace(str(fleet.database), str(tmp_path / "fleet.sqlite3")))
    result = run_cli("-c", str(no_password))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "mqtt.password_file: cannot read" in result.stderr
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("people-counter-fleet ")
