"""Faults on the provisioned fleet: killed services, a broker restart, a central outage, bad
inventory and config values, a device reboot. Runs after test_appliance.py on the same fleet."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import (
    APP_UNITS,
    COUNTER,
    DASHBOARD,
    DEVICE_UNITS,
    FLEET_READER,
    MOSQUITTO,
    STREAM,
    TARGET,
    WEB_USER,
    Node,
    device_state,
    launcher,
    node_now,
    run_playbook,
    state_after,
    wait_for,
)

BACK_WITHIN_S = 10.0


def fresh_state(device: Node) -> dict[str, object]:
    return state_after(device, node_now(device) - 6, 20)


def _active_with_new_pid(device: Node, unit: str, old_pid: int) -> int | None:
    shown = device.show(unit, "ActiveState", "MainPID")
    pid = int(shown["MainPID"])
    return pid if shown["ActiveState"] == "active" and pid not in (0, old_pid) else None


@pytest.mark.parametrize("unit", [MOSQUITTO, DASHBOARD, STREAM, COUNTER])
def test_kill_9_comes_back_and_totals_continue(device: Node, unit: str) -> None:
    before = fresh_state(device)
    old_pid = device.main_pid(unit)
    counter_pid = device.main_pid(COUNTER)
    killed_at = node_now(device)
    device.check(f"kill -9 {old_pid}")
    start = time.monotonic()
    new_pid = wait_for(
        f"{unit} active again with a new PID",
        lambda: _active_with_new_pid(device, unit, old_pid),
        30,
        0.25,
    )
    back_s = time.monotonic() - start
    print(
        f"{device.name}: {unit} back after kill -9 in {back_s:.1f} s (pid {old_pid} -> {new_pid})"
    )
    assert back_s <= BACK_WITHIN_S, f"{unit} took {back_s:.1f} s to come back"
    if unit != COUNTER:
        assert device.main_pid(COUNTER) == counter_pid, (
            f"killing {unit} restarted the counter"
        )
    after = state_after(device, killed_at, 30)
    assert int(after["total"]) >= int(before["total"]), (
        f"total went back: {before['total']} -> {after['total']}"
    )
    for other in DEVICE_UNITS:
        assert device.host.service(other).is_running, (
            f"{other} is down after the kill of {unit}"
        )
    assert device.check(f"systemctl is-active {TARGET}").strip() == "active"


@pytest.mark.units(MOSQUITTO, COUNTER)
def test_broker_restart_counter_reconnects(device: Node) -> None:
    before = fresh_state(device)
    counter = device.show(COUNTER, "MainPID", "NRestarts")
    restarted_at = node_now(device)
    device.check(f"systemctl restart {MOSQUITTO}")
    after = state_after(device, restarted_at, 20)
    assert int(after["total"]) >= int(before["total"])
    assert device.show(COUNTER, "MainPID", "NRestarts") == counter, (
        "the broker restart restarted the counter"
    )
    for unit in APP_UNITS:
        assert device.host.service(unit).is_running, (
            f"{unit} is down after the broker restart"
        )


@pytest.mark.units(MOSQUITTO, COUNTER)
def test_bridge_queues_while_the_central_broker_is_down(
    devices: list[Node], central: Node
) -> None:
    device = devices[0]
    events_topic = f"people_counter/{device.name}/event"
    reader = central.mqtt_password(FLEET_READER)
    session = "pc-test-outage"
    # A clean connection first ends any session of that name left by an earlier run (its backlog
    # would be read instead of this outage's events); then a new persistent QoS 1 session at the
    # central broker: what arrives while it is away waits there.
    central.mqtt_sub(events_topic, FLEET_READER, reader, client_id=session, wait_s=1)
    central.mqtt_sub(
        events_topic,
        FLEET_READER,
        reader,
        client_id=session,
        persistent=True,
        qos=1,
        wait_s=1,
    )
    central.check(f"systemctl stop {MOSQUITTO}")
    stopped_at = node_now(device)
    try:
        # What the device publishes during the outage, seen on its own broker (a minute).
        during = device.mqtt_sub(
            events_topic,
            WEB_USER,
            device.mqtt_password(WEB_USER),
            count=10_000,
            wait_s=60,
            qos=1,
        ).stdout.splitlines()
        last_state = device_state(device)
    finally:
        central.check(f"systemctl start {MOSQUITTO}")
    restarted_at = node_now(device)
    print(
        f"{len(during)} events from {device.name} while the central broker was down for {restarted_at - stopped_at:.0f} s"
    )
    assert during, "no events during the outage: nothing to prove"
    assert last_state is not None
    # The bridge reconnects with back-off (restart_timeout 5 60): allow for its longest wait.
    # The session may also hold events from just before the outage: read a few more than `during`
    # (they keep coming once the bridge is back).
    queued = central.mqtt_sub(
        events_topic,
        FLEET_READER,
        reader,
        client_id=session,
        persistent=True,
        qos=1,
        count=len(during) + 10,
        wait_s=150,
    ).stdout.splitlines()
    missing = [event for event in during if event not in queued]
    assert not missing, (
        f"{len(missing)} of {len(during)} events never reached the central broker: {missing[:3]}"
    )
    remote = state_after(device, float(last_state["ts"]) - 0.001, 30, via=central)
    assert int(remote["total"]) >= int(last_state["total"])


# Bad values: the play fails on the controller, naming the value, before any device changes.


def _fingerprint(device: Node) -> dict[str, str]:
    files = "/etc/people-counter/config.yml /etc/people-counter/dashboard.yml /etc/mosquitto/conf.d/people-counter.conf"
    pids = {unit: str(device.main_pid(unit)) for unit in DEVICE_UNITS}
    return {"sha256": device.check(f"sha256sum {files}"), **pids}


@pytest.mark.parametrize(
    ("extra_vars", "named"),
    [
        pytest.param(
            "people_counter_dashboard_port=not-a-port",
            "people_counter_dashboard_port",
            id="inventory",
        ),
        pytest.param(
            "people_counter_model=yolo",
            "people_counter_model",
            id="model",
        ),
        pytest.param(
            json.dumps({"people_counter_config": {"tracker": {"confirm_hits": 0}}}),
            "tracker.confirm_hits",
            id="config",
        ),
        pytest.param(
            json.dumps({"people_counter_input": {}}),
            "people_counter_input is not set",
            id="no-input",
        ),
        pytest.param(
            json.dumps(
                {"people_counter_input": {"source": "rtsp://admin:pw@192.0.2.9/s"}}
            ),
            "people_counter_camera_username",
            id="password-in-url",
        ),
        pytest.param(
            json.dumps(
                {
                    "people_counter_input": {"source": "rtsp://192.0.2.9/main"},
                    "people_counter_input_substream": "rtp://192.0.2.9/sub",
                }
            ),
            "input.substream: Value error, unsupported URL scheme",
            id="substream-scheme",
        ),
        pytest.param(
            json.dumps(
                {
                    "people_counter_input": "sample",
                    "people_counter_input_substream": "rtsp://192.0.2.9/sub",
                }
            ),
            "people_counter_input_substream is set",
            id="substream-without-camera",
        ),
    ],
)
def test_bad_value_fails_before_any_change(
    devices: list[Node], extra_vars: str, named: str
) -> None:
    before = {device.name: _fingerprint(device) for device in devices}
    result = run_playbook("site.yml", extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, "the play accepted a bad value"
    assert named in output, f"the failure does not name {named}:\n{output[-3000:]}"
    recap = re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    assert recap and all(changed == "0" for _, changed in recap), (
        f"something changed: {recap}"
    )
    assert "PLAY [People-counter devices]" not in output, "the device play ran"
    after = {device.name: _fingerprint(device) for device in devices}
    assert after == before


def test_a_host_override_merges_over_the_group_key_by_key() -> None:
    """people_counter_host_config sets the line; the group's occupancy_max and retention stay.
    The validation play prints each device's merged config with -v; the camera's password, a
    credential of its own, is in no config and printed nowhere."""
    result = run_playbook(
        "validate.yml",
        json.dumps(
            {
                "people_counter_host_config": {
                    "counting": {"line": [[0.0, 0.25], [1.0, 0.25]]}
                },
                "people_counter_input": {"source": "rtsp://192.0.2.9/stream1"},
                "people_counter_camera_username": "admin",
                "people_counter_camera_password": "p@ss/w0rd:%",
            }
        ),
        verbose=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "0.25" in output, output[-3000:]
    assert "occupancy_max: 10" in output and "retention_days: 30" in output, output[
        -3000:
    ]
    assert "credentials_file: /run/credentials/people-counter.service/camera" in output
    assert "p@ss" not in output and "w0rd" not in output, (
        "the camera's password was printed"
    )


# A device reboot (power off and on again): the appliance comes back by itself with its totals.


def test_device_reboot_keeps_totals(devices: list[Node]) -> None:
    device = devices[-1]
    before = fresh_state(device)
    launcher("stop", device.name)
    launcher("start", device.name)
    device.reconnect()
    booted_at = time.monotonic()

    def appliance_up() -> bool:
        try:
            return (
                device.run(f"systemctl is-active {TARGET} {' '.join(DEVICE_UNITS)}").rc
                == 0
            )
        except Exception:  # noqa: BLE001 - ssh may not answer yet
            device.reconnect()
            return False

    wait_for(f"{device.name}'s appliance after the reboot", appliance_up, 120, 1)
    after = state_after(device, float(before["ts"]), 60)
    print(
        f"{device.name}: appliance back {time.monotonic() - booted_at:.0f} s after boot; total {before['total']} -> {after['total']}"
    )
    assert int(after["total"]) >= int(before["total"])
    assert (
        float(after["uptime_s"]) < float(before["uptime_s"])
        or float(before["uptime_s"]) < 5
    ), "the counter did not restart"
