"""Commands over a whole run: up, down, stop, start, status, inventory."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import cgroups, host, network, template
from .common import LauncherError, log, run, write_text
from .state import HostRecord, Overlay, RunState, load

PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,11}")
HOST_RE = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
CLAIMS = network.REGISTRY / "prefixes"


@dataclass(frozen=True)
class HostSpec:
    name: str
    release: str


def parse_host_spec(text: str) -> HostSpec:
    name, _, release = text.partition(":")
    release = release or "bookworm"
    if not HOST_RE.fullmatch(name):
        raise LauncherError(
            f"bad host name {name!r}: use a-z, 0-9 and '-', at most 40 chars"
        )
    if release not in template.RELEASES:
        raise LauncherError(
            f"host {name}: unknown release {release!r} "
            f"(choose from {', '.join(template.RELEASES)})"
        )
    return HostSpec(name, release)


def nft_table_name(prefix: str) -> str:
    return f"pc_test_{prefix}"


# --- claiming a prefix ---------------------------------------------------


def claim_owner(prefix: str) -> str | None:
    """The state dir that claimed prefix, or None if unclaimed or the claim is stale.

    A claim is stale when its state dir never recorded this prefix: the
    launcher died between claiming and writing its first state file.
    """
    owner_file = CLAIMS / prefix / "owner"
    if not (CLAIMS / prefix).exists():
        return None
    owner = owner_file.read_text().strip() if owner_file.exists() else ""
    try:
        recorded = load(Path(owner)) if owner else None
    except LauncherError:
        return owner
    if recorded is None or recorded.prefix != prefix:
        owner_file.unlink(missing_ok=True)
        (CLAIMS / prefix).rmdir()
        return None
    return owner


def prefix_in_use(prefix: str) -> str | None:
    """Why prefix is taken, or None if it is free."""
    owner = claim_owner(prefix)
    if owner:
        return f"claimed by state dir {owner}"
    if network.nft_table_exists(nft_table_name(prefix)):
        return f"nft table {nft_table_name(prefix)} exists"
    for path in cgroups.prefix_dirs(prefix):
        if path.exists():
            return f"cgroup {path} exists"
    links = network.links_with_prefix(f"ve-{prefix}-")
    if links:
        return f"links {', '.join(links)} exist"
    return None


def claim_prefix(prefix: str, state_dir: Path) -> Path:
    with network.registry_lock():
        why = prefix_in_use(prefix)
        if why:
            raise LauncherError(
                f"name prefix {prefix!r} is in use ({why}); pick another --name"
            )
        claim = CLAIMS / prefix
        claim.mkdir(parents=True)
        (claim / "owner").write_text(f"{state_dir}\n")
    return claim


def release_prefix(run_state: RunState) -> None:
    claim = Path(run_state.prefix_claim)
    owner = claim / "owner"
    if owner.exists() and owner.read_text().strip() != run_state.state_dir:
        return
    owner.unlink(missing_ok=True)
    if claim.exists():
        claim.rmdir()


# --- up ----------------------------------------------------------------------


def ensure_ssh_key(state_dir: Path) -> Path:
    key = state_dir / "id_ed25519"
    if not key.exists():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"people-counter-test {state_dir}",
                "-f",
                str(key),
            ]
        )
    return key


def new_record(run_state: RunState, spec: HostSpec, lower: Path) -> HostRecord:
    base = Path(run_state.state_dir) / "hosts" / spec.name
    subnet, marker = network.reserve_subnet(f"{run_state.state_dir} {spec.name}")
    hosts = list(subnet.hosts())
    return HostRecord(
        name=spec.name,
        release=spec.release,
        machine=f"{run_state.prefix}-{spec.name}",
        subnet=str(subnet),
        address=str(hosts[1]),
        gateway=str(hosts[0]),
        subnet_reservation=str(marker),
        overlay=Overlay(
            lower=str(lower),
            upper=str(base / "upper"),
            work=str(base / "work"),
            merged=str(base / "root"),
        ),
        cgroups=[str(p) for p in cgroups.host_dirs(run_state.prefix, spec.name)],
        console_log=str(base / "console.log"),
        ssh_key=run_state.ssh_key,
    )


def check_fresh(state_dir: Path) -> None:
    old = load(state_dir)
    if old and any(h.status != "down" for h in old.hosts):
        raise LauncherError(
            f"{state_dir} still holds hosts of run {old.prefix!r}; "
            f"run 'down --state-dir {state_dir}' first"
        )


def up(prefix: str, specs: list[HostSpec], state_dir: Path, timeout: float) -> RunState:
    if not PREFIX_RE.fullmatch(prefix):
        raise LauncherError(
            f"bad --name {prefix!r}: a-z then a-z/0-9, at most 12 chars"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise LauncherError("host names must be unique")
    check_fresh(state_dir)
    templates = {s.release: template.ensure_template(s.release) for s in specs}
    run_state = RunState(
        prefix=prefix,
        state_dir=str(state_dir),
        ssh_key=str(state_dir / "id_ed25519"),
        nft_table=nft_table_name(prefix),
        prefix_claim=str(CLAIMS / prefix),
        cgroup_parents=[str(p) for p in cgroups.prefix_dirs(prefix)],
    )
    claim_prefix(prefix, state_dir)
    run_state.save()
    ensure_ssh_key(state_dir)
    started = time.monotonic()
    for spec in specs:
        run_state.hosts.append(new_record(run_state, spec, templates[spec.release]))
        run_state.save()
    network.enable_forwarding()
    for chain in network.forward_drop_chains():
        log(f"warning: forward chain {chain} drops by default; hosts may lack internet")
    network.nft_ensure_masquerade(
        run_state.nft_table, {h.name: h.subnet for h in run_state.hosts}
    )
    for record in run_state.hosts:
        write_text(Path(record.console_log), "")
        boot(run_state, record)
    wait_all(run_state, run_state.hosts, timeout)
    write_inventory(run_state)
    log(
        f"{len(specs)} host(s) ready in {time.monotonic() - started:.1f}s; "
        f"inventory: {state_dir / 'inventory.yml'}"
    )
    return run_state


def boot(run_state: RunState, record: HostRecord) -> None:
    """Mount, configure and start one host, saving state after each step."""
    host.mount_overlay(record)
    record.status = "mounted"
    run_state.save()
    public_key = Path(run_state.ssh_key + ".pub").read_text(encoding="utf-8")
    host.configure_root(record, public_key)
    host.spawn(record)
    record.status = "starting"
    run_state.save()
    host.attach_network(record)
    run_state.save()


def wait_all(run_state: RunState, records: list[HostRecord], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for record in records:
        state = host.wait_ready(record, deadline)
        record.status = "running"
        run_state.save()
        log(f"{record.name}: {state} at {record.address} (pid {record.pid})")


# --- down, stop, start --------------------------------------------------------


def down(run_state: RunState) -> None:
    """Tear down everything the state file records; safe to repeat."""
    for record in reversed(run_state.hosts):
        host.dispose(record)
        record.status = "down"
        record.veth = None
        run_state.save()
    network.nft_delete_table(run_state.nft_table)
    for parent in map(Path, run_state.cgroup_parents):
        cgroups.remove([parent])
        cgroups.remove_if_empty(parent.parent)
    release_prefix(run_state)
    (Path(run_state.state_dir) / "inventory.yml").unlink(missing_ok=True)
    run_state.save()


def stop_host(run_state: RunState, name: str) -> None:
    record = run_state.host(name)
    if record.status == "down":
        raise LauncherError(f"{name} was torn down; run up again")
    host.halt(record)
    record.status = "stopped"
    record.veth = None
    run_state.save()
    log(f"{name}: stopped (disk kept in {record.overlay.upper})")


def start_host(run_state: RunState, name: str, timeout: float) -> None:
    record = run_state.host(name)
    if record.status == "down":
        raise LauncherError(f"{name} was torn down; run up again")
    if host.host_alive(record):
        raise LauncherError(f"{name} is already running (pid {record.pid})")
    boot(run_state, record)
    wait_all(run_state, [record], timeout)


# --- status and inventory ----------------------------------------------------


def host_status(record: HostRecord) -> dict[str, object]:
    alive = host.host_alive(record)
    return {
        "name": record.name,
        "release": record.release,
        "address": record.address,
        "recorded": record.status,
        "process": f"pid {record.pid}" if alive else "not running",
        "veth": record.veth
        if record.veth and network.link_exists(record.veth)
        else "-",
    }


def status_lines(run_state: RunState) -> list[str]:
    rows = [host_status(r) for r in run_state.hosts]
    lines = [f"run {run_state.prefix} in {run_state.state_dir}"]
    for row in rows:
        lines.append(
            "  {name:<20} {release:<9} {address:<15} {recorded:<9} {process:<14} "
            "{veth}".format(**row)
        )
    return lines


def yaml_str(value: str) -> str:
    return json.dumps(value)


def write_inventory(run_state: RunState) -> Path:
    common_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    lines = [
        "# Written by molecule/launcher/nspawn_hosts.py; do not edit.",
        "all:",
        "  hosts:",
    ]
    for record in run_state.hosts:
        if record.status == "down":
            continue
        lines += [
            f"    {record.name}:",
            f"      ansible_host: {yaml_str(record.address)}",
            "      ansible_user: root",
            f"      ansible_ssh_private_key_file: {yaml_str(record.ssh_key)}",
            f"      ansible_ssh_common_args: {yaml_str(common_args)}",
            "      ansible_python_interpreter: /usr/bin/python3",
        ]
    path = Path(run_state.state_dir) / "inventory.yml"
    write_text(path, "\n".join(lines) + "\n")
    return path


def state_dir_arg(text: str) -> Path:
    return Path(os.path.abspath(text))
