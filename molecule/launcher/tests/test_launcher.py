"""Unit tests for the parts of the launcher that need neither root nor nspawn."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest
from nspawn_launcher import fleet, host, network, state, supervisor, template
from nspawn_launcher.common import LauncherError


def make_state(tmp_path: Path) -> state.RunState:
    run_state = state.RunState(
        prefix="t1",
        state_dir=str(tmp_path),
        ssh_key=str(tmp_path / "id_ed25519"),
        nft_table="pc_test_t1",
        prefix_claim="/run/people-counter-test/prefixes/t1",
        cgroup_parents=["/sys/fs/cgroup/systemd/people-counter-test/t1"],
    )
    run_state.hosts.append(
        state.HostRecord(
            name="dev1",
            release="trixie",
            machine="t1-dev1",
            subnet="10.77.3.0/24",
            address="10.77.3.2",
            gateway="10.77.3.1",
            subnet_reservation="/run/people-counter-test/subnets/10.77.3.0_24",
            overlay=state.Overlay("/lower", "/upper", "/work", "/root"),
            cgroups=["/sys/fs/cgroup/systemd/people-counter-test/t1/dev1"],
            console_log=str(tmp_path / "console.log"),
            ssh_key=str(tmp_path / "id_ed25519"),
            status="running",
        )
    )
    return run_state


def test_host_spec_defaults_to_bookworm() -> None:
    assert fleet.parse_host_spec("dev-1") == fleet.HostSpec("dev-1", "bookworm")
    assert fleet.parse_host_spec("d:trixie") == fleet.HostSpec("d", "trixie")


@pytest.mark.parametrize("text", ["Dev", "a_b", "-a", "a:buster", "x" * 41])
def test_bad_host_specs_are_refused(text: str) -> None:
    with pytest.raises(LauncherError):
        fleet.parse_host_spec(text)


def test_first_free_skips_overlapping_networks() -> None:
    taken = [IPv4Network("10.77.0.0/23"), IPv4Network("10.77.2.9/32")]
    assert network.first_free(taken) == IPv4Network("10.77.3.0/24")


def test_first_free_gives_up_when_everything_is_taken() -> None:
    with pytest.raises(LauncherError):
        network.first_free([IPv4Network("10.0.0.0/8")])


def test_state_round_trip(tmp_path: Path) -> None:
    run_state = make_state(tmp_path)
    run_state.save()
    loaded = state.load(tmp_path)
    assert loaded == run_state
    assert loaded is not None and loaded.host("dev1").overlay.upper == "/upper"
    with pytest.raises(LauncherError):
        loaded.host("nope")


def test_inventory_lists_live_hosts_with_ssh_settings(tmp_path: Path) -> None:
    run_state = make_state(tmp_path)
    text = fleet.write_inventory(run_state).read_text()
    assert 'ansible_host: "10.77.3.2"' in text
    assert "ansible_user: root" in text
    assert "UserKnownHostsFile=/dev/null" in text
    assert "ansible_python_interpreter: /usr/bin/python3" in text
    run_state.hosts[0].status = "down"
    assert "dev1" not in fleet.write_inventory(run_state).read_text()


def test_network_unit_gives_static_address_and_gateway(tmp_path: Path) -> None:
    unit = host.network_unit(make_state(tmp_path).hosts[0])
    assert "Name=host0" in unit
    assert "Address=10.77.3.2/24" in unit
    assert "Gateway=10.77.3.1" in unit


def test_template_key_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    before = template.template_key("bookworm")
    monkeypatch.setenv("PC_TEMPLATE_EXTRA_PACKAGES", "curl")
    assert template.template_key("bookworm") != before
    assert template.template_key("bookworm").startswith("bookworm-")


def test_supervisor_restarts_after_reboot_status(tmp_path: Path) -> None:
    counter = tmp_path / "boots"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
        '[ "$n" -ge 2 ] && exit 7; exit 133'
    )
    reboots: list[int] = []
    run = supervisor.Supervisor(
        "10.77.0.1/24", ["sh", "-c", script], lambda pid, _gw: reboots.append(pid)
    )
    assert run.run() == 7
    assert counter.read_text().strip() == "3"
    assert len(reboots) == 2
