"""TLS between the brokers: the central broker's certificate and each device's bridge certificate
come from the fleet CA the roles keep on the controller; a client without a certificate from that
CA is refused even with the right password."""

from __future__ import annotations

import shlex

import pytest
from conftest import MOSQUITTO, Node, run_playbook

CERTS = "/etc/mosquitto/certs"
FLEET_CA = f"{CERTS}/people-counter-fleet-ca.crt"
BRIDGE_CERT = f"{CERTS}/people-counter-bridge.crt"
BRIDGE_KEY = f"{CERTS}/people-counter-bridge.key"


def _publish_to_central(device: Node, central: Node, *tls: str) -> tuple[int, str]:
    """Publish one message to the central broker's TLS listener as the device's bridge user."""
    argv = [
        "mosquitto_pub", "-h", central.address, "-p", "8883", "--cafile", FLEET_CA, *tls,
        "-u", f"bridge-{device.name}", "-P", device.secret("mqtt-bridge"),
        "-t", f"people_counter/{device.name}/tls-test", "-m", "x", "-q", "1",
    ]  # fmt: skip
    result = device.run(shlex.join(argv))
    return result.rc, result.stderr.strip()


@pytest.mark.units(MOSQUITTO)
def test_central_certificate_is_the_fleet_ca_s(device: Node, central: Node) -> None:
    verify = device.run(
        f"openssl s_client -connect {central.address}:8883 -CAfile {FLEET_CA} "
        f"-cert {BRIDGE_CERT} -key {BRIDGE_KEY} "
        f"-verify_return_error -verify_ip {central.address} </dev/null"
    )
    assert verify.rc == 0 and "Verify return code: 0 (ok)" in verify.stdout, (
        verify.stdout[-1500:] + verify.stderr[-500:]
    )


@pytest.mark.units(MOSQUITTO)
def test_a_client_needs_a_certificate_from_the_fleet_ca(
    device: Node, central: Node
) -> None:
    rc, err = _publish_to_central(
        device, central, "--cert", BRIDGE_CERT, "--key", BRIDGE_KEY
    )
    assert rc == 0, f"the bridge's own certificate and password were refused: {err}"
    rc, err = _publish_to_central(device, central)
    assert rc != 0, "a client without a certificate got in"
    device.check(
        "cd /root && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        f"-days 1 -subj /CN=bridge-{device.name} -keyout rogue.key -out rogue.crt 2>/dev/null"
    )
    try:
        rc, err = _publish_to_central(
            device, central, "--cert", "/root/rogue.crt", "--key", "/root/rogue.key"
        )
        assert rc != 0, "a self-signed certificate with the bridge's name got in"
    finally:
        device.run("rm -f /root/rogue.key /root/rogue.crt")


def test_the_play_fails_naming_a_device_whose_bridge_is_down(
    devices: list[Node], central: Node
) -> None:
    """site.yml's bridge check: it passes while the central broker holds each device's retained
    online, and fails naming each device when it cannot (here: the central broker is down)."""
    check = "../molecule/default/bridge_check.yml"
    up = run_playbook(check, "mosquitto_bridge_check_s=6", result_format="json")
    assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
    central.check(f"systemctl stop {MOSQUITTO}")
    try:
        down = run_playbook(check, "mosquitto_bridge_check_s=6", result_format="json")
    finally:
        central.check(f"systemctl start {MOSQUITTO}")
    output = down.stdout + down.stderr
    assert down.returncode != 0, output[-3000:]
    for device in devices:
        assert (
            f"{device.name}: its bridge to {central.address}:8883 is not up" in output
        ), output[-3000:]
