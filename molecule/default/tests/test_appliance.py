"""The appliance as provisioned by playbooks/site.yml: packages, units, ports, MQTT, dashboard."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
import yaml
from conftest import (
    APP_UNITS,
    COUNTER,
    COUNTER_USER,
    DASHBOARD,
    DEVICE_UNITS,
    FLEET_READER,
    MOSQUITTO,
    STREAM,
    TARGET,
    WEB_USER,
    Node,
    device_state,
    exposure,
    node_now,
    publish_refused,
    role_default,
    state_after,
    wait_for,
)
from people_counter.pins import pins
from people_counter.prepare.model_catalog import CATALOG

STATE_KEYS = {
    "count", "total", "in", "out", "avg_duration_s", "fps", "inference_ms",
    "dropped_frames", "input", "uptime_s", "ts",
}  # fmt: skip


# Packages and pins.


def test_ffmpeg_is_the_pinned_build(device: Node) -> None:
    version, link = pins().ffmpeg.version, pins().ffmpeg.device_path
    first_line = device.check(f"{link} -hide_banner -version").splitlines()[0]
    # The static build calls itself n<version>-<commits>-g<hash>-<date>.
    assert re.match(rf"ffmpeg version n?{re.escape(version)}\b", first_line), first_line
    target = device.check(f"readlink -f {link}").strip()
    assert f"/{version}/" in target, target


def test_openvino_is_pinned_and_sees_the_cpu(device: Node) -> None:
    pinned = pins().openvino_version
    py = "/opt/people-counter/current/venv/bin/python"
    installed = device.check(
        f"{py} -c 'import importlib.metadata as m; print(m.version(\"openvino\"))'"
    ).strip()
    assert installed == pinned
    devices = device.check(
        f"{py} -c 'import openvino; print(openvino.Core().available_devices)'"
    )
    assert "CPU" in devices


@pytest.mark.units(COUNTER)
def test_the_configured_model_came_from_the_controller(device: Node) -> None:
    """The IR of the configured model, prepared on the controller, and the counter running it."""
    name = role_default("people_counter", "people_counter_model")
    config = yaml.safe_load(device.check("cat /etc/people-counter/config.yml"))
    assert config["model"]["name"] == name
    model_dir = f"/var/lib/people-counter/models/{name}"
    for file in ("model.xml", "model.bin", "source.json"):
        f = device.host.file(f"{model_dir}/{file}")
        assert f.is_file, f"{f.path} is missing"
        assert (f.user, f.group, f.mode) == ("root", "people-counter", 0o640), f.path
    source = json.loads(device.check(f"cat {model_dir}/source.json"))
    assert source["model"] == name
    assert source["archive_sha256"] == CATALOG[name].pins["archive_sha256"]
    for file in ("xml", "bin"):
        digest = device.check(f"sha256sum {model_dir}/model.{file}").split()[0]
        assert digest == source[f"{file}_sha256"], (
            f"model.{file} is not the prepared one"
        )
    # Converting is the controller's work: the device's venv lacks the converter's extra.
    venv_python = "/opt/people-counter/current/venv/bin/python"
    assert device.run(f"{venv_python} -c 'import tensorboardX'").rc != 0
    pid = device.main_pid(COUNTER)
    loaded = device.check(f"journalctl -u {COUNTER} _PID={pid} -o cat --no-pager")
    assert f"model {model_dir}/model.xml ({name} form" in loaded, loaded[-2000:]


@pytest.mark.units(MOSQUITTO)
def test_mosquitto_is_the_distro_package(device: Node, central: Node) -> None:
    for node in (device, central):
        assert node.host.package("mosquitto").is_installed


def test_time_is_kept(device: Node) -> None:
    assert device.host.service("systemd-timesyncd").is_enabled


# Units.


def test_units_enabled_and_active(device: Node) -> None:
    for unit in DEVICE_UNITS:
        svc = device.host.service(unit)
        assert svc.is_enabled, f"{unit} is not enabled"
        assert svc.is_running, f"{unit} is not running"
    assert device.check(f"systemctl is-active {TARGET}").strip() == "active"
    assert device.check(f"systemctl is-enabled {TARGET}").strip() == "enabled"


@pytest.mark.units(MOSQUITTO)
def test_central_broker_runs(central: Node) -> None:
    svc = central.host.service(MOSQUITTO)
    assert svc.is_enabled and svc.is_running


def test_unit_order(device: Node) -> None:
    def props(unit: str) -> dict[str, set[str]]:
        shown = device.show(unit, "After", "Wants", "Requires", "PartOf", "WantedBy")
        return {key: set(value.split()) for key, value in shown.items()}

    dashboard, stream, counter, target = (
        props(u) for u in (DASHBOARD, STREAM, COUNTER, TARGET)
    )
    assert MOSQUITTO in dashboard["After"]
    assert DASHBOARD in stream["After"]
    assert {MOSQUITTO, DASHBOARD, STREAM} <= counter["After"]
    # Wants=, not Requires=: a broker restart must leave the counter counting.
    assert MOSQUITTO in counter["Wants"]
    assert MOSQUITTO not in counter["Requires"]
    for unit, p in ((DASHBOARD, dashboard), (STREAM, stream), (COUNTER, counter)):
        assert TARGET in p["PartOf"], f"{unit} is not PartOf {TARGET}"
        assert TARGET in p["WantedBy"], f"{unit} is not WantedBy {TARGET}"
    assert {MOSQUITTO, *APP_UNITS} <= target["Wants"]
    assert "multi-user.target" in target["WantedBy"]
    shown = device.show(COUNTER, "Type", "WatchdogUSec", "NotifyAccess", "Restart")
    assert shown["Type"] == "notify"
    assert shown["WatchdogUSec"] not in ("0", "infinity", ""), shown
    assert shown["Restart"] == "on-failure"


def test_units_verify_cleanly(device: Node) -> None:
    units = " ".join(f"/etc/systemd/system/{unit}" for unit in (*APP_UNITS, TARGET))
    result = device.run(f"systemd-analyze verify {units}")
    # It exits 0 even on some warnings: read what it says about our units too.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "people-counter" in line
    ]
    assert result.rc == 0, result.stderr
    assert not ours, "\n".join(ours)


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "RestrictSUIDSGID": "yes",
}


@pytest.mark.parametrize("unit", [*APP_UNITS, MOSQUITTO])
def test_hardening_properties(device: Node, unit: str) -> None:
    shown = device.show(
        unit,
        *HARDENING,
        "CapabilityBoundingSet",
        "RestrictAddressFamilies",
        "SystemCallFilter",
        "User",
    )
    for key, value in HARDENING.items():
        assert shown[key] == value, f"{unit}: {key}={shown[key]}, expected {value}"
    assert shown["CapabilityBoundingSet"] == "", (
        f"{unit}: CapabilityBoundingSet={shown['CapabilityBoundingSet']}"
    )
    assert shown["RestrictAddressFamilies"], f"{unit}: no RestrictAddressFamilies"
    assert shown["SystemCallFilter"], f"{unit}: no SystemCallFilter"
    assert shown["User"] not in ("", "root"), (
        f"{unit} runs as {shown['User'] or 'root'}"
    )


def test_each_service_has_its_own_user(device: Node) -> None:
    users = [device.show(unit, "User")["User"] for unit in (*APP_UNITS, MOSQUITTO)]
    assert len(set(users)) == len(users), users


@pytest.mark.parametrize("unit", APP_UNITS)
def test_app_units_yield_the_cpu_to_the_device(device: Node, unit: str) -> None:
    """Nice= on the unit, and the same value on its session's autogroup (what the kernel weighs)."""
    nice = str(role_default("people_counter", "people_counter_nice"))
    shown = device.show(unit, "Nice", "MainPID")
    assert shown["Nice"] == nice, f"{unit}: Nice={shown['Nice']}, expected {nice}"
    autogroup = device.check(f"cat /proc/{shown['MainPID']}/autogroup").split()
    assert autogroup[-1] == nice, (
        f"{unit}: autogroup {' '.join(autogroup)}, expected nice {nice}"
    )


@pytest.mark.parametrize(
    ("unit", "target"),
    [(DASHBOARD, 1.5), (STREAM, 1.5), (COUNTER, 1.5), (MOSQUITTO, 3.0)],
)
def test_exposure_within_target(device: Node, unit: str, target: float) -> None:
    score = exposure(device, unit)
    print(f"{device.name} {unit}: systemd-analyze security exposure {score}")
    assert score <= target, f"{unit}: exposure {score} > {target}"


# Ports.


def _listeners(node: Node) -> list[tuple[str, int]]:
    out = node.check("ss -ltnH")
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        found.append((address.strip("[]"), int(port)))
    return found


def test_mqtt_on_loopback_only_dashboard_on_8080(device: Node) -> None:
    listeners = _listeners(device)
    mqtt = {address for address, port in listeners if port == 1883}
    assert mqtt, f"nothing listens on 1883: {listeners}"
    assert mqtt <= {"127.0.0.1", "::1"}, f"1883 listens beyond loopback: {mqtt}"
    assert any(port == 8080 for _, port in listeners), (
        f"nothing listens on 8080: {listeners}"
    )
    assert not any(port in (8883, 9001) for _, port in listeners), (
        f"an opt-in listener is on: {listeners}"
    )


@pytest.mark.units(MOSQUITTO)
def test_central_listens_for_bridges(central: Node) -> None:
    listeners = _listeners(central)
    assert {address for address, port in listeners if port == 1883} <= {
        "127.0.0.1",
        "::1",
    }
    assert any(port == 8883 for _, port in listeners), listeners


# Mosquitto's access control.


@pytest.mark.units(MOSQUITTO)
def test_anonymous_refused(device: Node) -> None:
    result = device.mqtt_sub("people_counter/#", None, None, wait_s=3)
    assert result.rc != 0
    assert "not authori" in (result.stderr + result.stdout).lower()
    assert "state" not in result.stdout


@pytest.mark.units(MOSQUITTO)
def test_wrong_password_refused(device: Node) -> None:
    result = device.mqtt_sub("people_counter/#", WEB_USER, "not-the-password", wait_s=3)
    assert result.rc != 0
    assert "not authori" in (result.stderr + result.stdout).lower()


@pytest.mark.units(MOSQUITTO)
def test_dashboard_user_cannot_publish(device: Node) -> None:
    web = device.mqtt_password(WEB_USER)
    refused = device.mqtt_pub(
        f"people_counter/{device.name}/event", '{"type": "forged"}', WEB_USER, web
    )
    # MQTT v5 at QoS 1: the broker refuses the PUBLISH; mosquitto_pub warns, yet exits 0.
    assert "not authori" in (refused.stderr + refused.stdout).lower(), (
        "the dashboard user published"
    )
    # The same command works for the counter's user on its own prefix: the refusal is the ACL.
    counter = device.mqtt_password(COUNTER_USER)
    allowed = device.mqtt_pub(
        f"people_counter/{device.name}/test-probe", "probe", COUNTER_USER, counter
    )
    assert allowed.rc == 0 and "not authori" not in allowed.stderr.lower(), (
        allowed.stderr
    )


@pytest.mark.units(MOSQUITTO)
def test_counter_user_reads_nothing(device: Node) -> None:
    counter = device.mqtt_password(COUNTER_USER)
    other = device.mqtt_sub("people_counter/#", COUNTER_USER, counter, wait_s=3)
    assert "{" not in other.stdout, f"the counter's user read: {other.stdout[:200]}"
    # The dashboard's user reads the same topics at once (the state is retained).
    reader = device.mqtt_sub(
        f"people_counter/{device.name}/state", WEB_USER, device.mqtt_password(WEB_USER)
    )
    assert reader.rc == 0 and "total" in reader.stdout


@pytest.mark.units(MOSQUITTO)
def test_counter_user_cannot_write_other_prefixes(device: Node) -> None:
    counter = device.mqtt_password(COUNTER_USER)
    assert publish_refused(
        device, "people_counter/another-device/state", COUNTER_USER, counter
    ), "the counter's user wrote another prefix"


# The counter and the fleet.


@pytest.mark.units(COUNTER, MOSQUITTO)
def test_state_has_the_contract_and_totals_rise(device: Node) -> None:
    first = wait_for(f"a state of {device.name}", lambda: device_state(device), 30)
    assert STATE_KEYS <= set(first), f"missing keys: {STATE_KEYS - set(first)}"
    assert first["input"] == "ok"
    assert abs(node_now(device) - float(first["ts"])) < 10, "the state is not fresh"

    def risen() -> dict[str, object] | None:
        state = device_state(device)
        return state if state and int(state["total"]) > int(first["total"]) else None

    later = wait_for(
        f"the total of {device.name} to rise above {first['total']}",
        risen,
        90,
        every_s=3,
    )
    assert int(later["count"]) >= 0 and later["fps"] > 0
    print(f"{device.name}: total {first['total']} -> {later['total']}")


@pytest.mark.units(MOSQUITTO)
def test_same_figures_reach_the_central_broker(device: Node, central: Node) -> None:
    local = wait_for(f"a state of {device.name}", lambda: device_state(device), 30)
    # The bridged state is the same message: a later one there carries at least these figures.
    remote = state_after(device, float(local["ts"]) - 0.001, 30, via=central)
    assert remote.keys() == local.keys()
    assert int(remote["total"]) >= int(local["total"])
    # And one message seen at both ends is identical.
    stream_local = device.mqtt_sub(
        f"people_counter/{device.name}/state",
        WEB_USER,
        device.mqtt_password(WEB_USER),
        count=8,
        wait_s=30,
    )
    stream_remote = central.mqtt_sub(
        f"people_counter/{device.name}/state",
        FLEET_READER,
        central.mqtt_password(FLEET_READER),
        count=4,
        wait_s=30,
    )
    local_messages = {line for line in stream_local.stdout.splitlines() if line.strip()}
    remote_messages = [
        line for line in stream_remote.stdout.splitlines() if line.strip()
    ]
    assert remote_messages, "no state at the central broker"
    assert any(line in local_messages for line in remote_messages), (
        "no bridged state equals a device's"
    )


@pytest.mark.units(MOSQUITTO)
def test_central_broker_refuses_anonymous(central: Node) -> None:
    # The broker is up: the fleet reader connects and gets the devices' retained states.
    reader = central.mqtt_sub(
        "people_counter/+/state",
        FLEET_READER,
        central.mqtt_password(FLEET_READER),
        wait_s=10,
        retained_only=True,
    )
    up = reader.rc == 0 and "total" in reader.stdout
    assert up, f"the fleet reader got no state (exit {reader.rc}): {reader.stderr}"
    # The same command without a login: the broker's own refusal (CONNACK 5), not a failed connection.
    result = central.mqtt_sub("people_counter/#", None, None, wait_s=3)
    assert "Connection Refused: not authorised" in result.stderr + result.stdout
    assert result.rc == 5, (result.rc, result.stderr)
    assert "total" not in result.stdout


# The dashboard.


@pytest.mark.units(DASHBOARD, STREAM)
def test_dashboard_asks_for_a_login(device: Node) -> None:
    browser = device.browser()
    status, _, body = browser.get("/")  # follows the redirect to /login
    assert status == 200
    assert b"password" in body.lower()
    status, _, _ = browser.get("/video.mjpg")
    assert status == 401
    status, _ = browser.login("not-the-password")
    assert status == 401


@pytest.mark.units(DASHBOARD, STREAM, COUNTER)
def test_dashboard_serves_video_after_login(device: Node) -> None:
    browser = device.browser()
    status, page = browser.login(device.secret("dashboard-password"))
    assert status == 200, page[:300]
    status, _, api = browser.get("/api/state")
    assert status == 200
    assert "total" in json.loads(api).get("state", json.loads(api))
    content_type, data = browser.first_bytes("/video.mjpg", 200_000)
    assert content_type.startswith("multipart/x-mixed-replace")
    start = data.find(b"\xff\xd8")
    assert start >= 0, f"no JPEG in the first {len(data)} bytes of the video"
    assert data.find(b"\xff\xd9", start) > start, "no complete JPEG frame"


@pytest.mark.units(DASHBOARD, COUNTER)
def test_healthz_and_metrics(device: Node) -> None:
    browser = device.browser()
    status, _, body = browser.get("/healthz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"
    status, headers, body = browser.get("/metrics")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/plain")
    samples = _parse_prometheus(body.decode())
    assert samples["peoplecounter_entries_total"] >= 0
    assert samples.get("peoplecounter_state_fresh") == 1
    assert samples.get("peoplecounter_input_up") == 1
    assert samples.get("peoplecounter_dashboard_mqtt_connected") == 1
    assert samples.get("peoplecounter_build_info") == 1
    assert samples["process_resident_memory_bytes"] > 0


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$")


def _parse_prometheus(text: str) -> dict[str, float]:
    """The Prometheus text format, strictly: every line a comment, blank, or a sample."""
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        value = float(match.group(3))
        assert not math.isnan(value) or match.group(3) == "NaN"
        samples.setdefault(match.group(1), value)
    assert types, "no # TYPE lines"
    return samples


def test_reload_keeps_counting(device: Node) -> None:
    """`systemctl reload people-counter` re-reads the config without losing counts."""
    before = wait_for(f"a state of {device.name}", lambda: device_state(device), 30)
    pid = device.main_pid(COUNTER)
    device.check(f"systemctl reload {COUNTER}")
    time.sleep(2)
    assert device.main_pid(COUNTER) == pid, "reload restarted the counter"
    after = state_after(device, float(before["ts"]), 20)
    assert int(after["total"]) >= int(before["total"])
