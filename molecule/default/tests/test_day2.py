"""Day-2 operations as the README gives them: the admin's `people-counter` under sudo (status,
backup, reset, restore), playbooks/backup.yml, and playbooks/rotate-passwords.yml."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import time

import pytest
from conftest import (
    COUNTER,
    DASHBOARD,
    INVENTORY_DIR,
    WEB_USER,
    Node,
    node_now,
    run_playbook,
    state_after,
    wait_for,
)

BACKUPS = "/var/lib/people-counter/backups"


def _status_total(device: Node) -> int:
    out = device.check("people-counter status")
    line = next(line for line in out.splitlines() if line.startswith("total"))
    return int(line.split()[1])


@pytest.mark.units(COUNTER)
def test_admin_command_backs_up_resets_and_restores(device: Node) -> None:
    assert (
        device.check("command -v people-counter").strip()
        == "/usr/local/bin/people-counter"
    )
    before = _status_total(device)
    copy = f"{BACKUPS}/test-{int(time.time())}.sqlite3"
    device.check(f"people-counter backup {copy}")
    assert device.check(f"stat -c %U {copy}").strip() == "people-counter"
    try:
        device.check("people-counter reset")
        after_reset = state_after(device, node_now(device), 30)
        assert int(after_reset["total"]) < max(before, 1) + 3, (before, after_reset)
        out = device.check(f"people-counter restore {copy}")
        backed_up = int(re.search(r"total (\d+)", out).group(1))  # type: ignore[union-attr]
        assert backed_up >= before, out
        assert device.show(COUNTER, "ActiveState")["ActiveState"] == "active"
        restored = state_after(device, node_now(device), 60)
        assert int(restored["total"]) >= backed_up, (backed_up, restored)
    finally:
        device.run(f"rm -f {copy}")


@pytest.mark.units(COUNTER)
def test_backup_playbook_brings_every_device_s_counts_home(devices: list[Node]) -> None:
    result = run_playbook("backup.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for device in devices:
        copies = sorted(
            (INVENTORY_DIR.parent / "backups" / device.name).glob("counts-*.sqlite3")
        )
        assert copies, f"no backup of {device.name}"
        db = sqlite3.connect(f"file:{copies[-1]}?mode=ro", uri=True)
        total = db.execute(
            "SELECT total FROM totals ORDER BY period_id DESC LIMIT 1"
        ).fetchone()
        db.close()
        assert total is not None and total[0] >= 0
        kept = device.run(f"test -e {BACKUPS}/{copies[-1].name}")
        assert kept.rc != 0, f"{device.name} kept its copy {copies[-1].name}"


@pytest.mark.units(DASHBOARD, COUNTER)
def test_rotating_passwords_ends_sessions_and_keeps_counting(
    devices: list[Node],
) -> None:
    device = devices[0]
    old_password = device.secret("dashboard-password")
    old_mqtt = device.mqtt_password(WEB_USER)
    session = device.browser()
    assert session.login(old_password)[0] == 200
    assert session.get("/api/state")[0] == 200
    result = run_playbook("rotate-passwords.yml", limit=f"{device.name},central")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    new_password = device.secret("dashboard-password")
    assert new_password != old_password and device.mqtt_password(WEB_USER) != old_mqtt
    assert session.get("/api/state")[0] == 401, (
        "a session of the old password still works"
    )
    fresh = device.browser()
    assert fresh.login(old_password)[0] == 401
    assert fresh.login(new_password)[0] == 200
    wait_for(
        "a state published with the new MQTT passwords",
        lambda: (
            device.mqtt_sub(
                f"people_counter/{device.name}/state",
                WEB_USER,
                device.mqtt_password(WEB_USER),
            ).rc
            == 0
        ),
        60,
    )


def test_prometheus_targets_come_from_the_inventory_and_answer(
    devices: list[Node],
) -> None:
    result = run_playbook("prometheus-targets.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    targets = json.loads(
        (INVENTORY_DIR.parent / "prometheus" / "people-counter.json").read_text()
    )
    by_device = {entry["labels"]["device"]: entry["targets"] for entry in targets}
    assert by_device == {device.name: [f"{device.address}:8443"] for device in devices}
    for device in devices:
        status, _, body = device.browser().get("/metrics")
        assert status == 200 and b"peoplecounter_build_info" in body, (
            status,
            body[:300],
        )


def _dashboard_reachable(device: Node) -> bool:
    try:
        with socket.create_connection((device.address, 8443), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.units(DASHBOARD)
def test_the_firewall_keeps_the_dashboard_to_the_management_network(
    devices: list[Node],
) -> None:
    """With people_counter_firewall_allow naming a network the controller is not in, the
    controller cannot reach the dashboard's port while the device's loopback still can; with the
    list emptied again, the firewall and its table are gone."""
    device = devices[-1]
    assert _dashboard_reachable(device)
    closed = run_playbook(
        "site.yml",
        json.dumps({"people_counter_firewall_allow": ["192.0.2.0/24"]}),
        limit=device.name,
    )
    try:
        assert closed.returncode == 0, (closed.stdout + closed.stderr)[-3000:]
        assert (
            device.show("people-counter-firewall.service", "ActiveState")["ActiveState"]
            == "active"
        )
        assert not _dashboard_reachable(device), "the controller reached the dashboard"
        status, body = device.local_https("/healthz")
        assert status in (200, 503), (status, body[:300])
    finally:
        opened = run_playbook("site.yml", limit=device.name)
    assert opened.returncode == 0, (opened.stdout + opened.stderr)[-3000:]
    assert _dashboard_reachable(device)
    assert "people_counter" not in device.check("nft list tables")
