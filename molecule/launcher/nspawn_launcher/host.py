"""Life cycle of one test host: overlay, cgroups, nspawn, veth, readiness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import cgroups, network
from .common import (
    LauncherError,
    first_child,
    is_mounted,
    log,
    remove_tree,
    run,
    write_text,
)
from .state import HostRecord

SSH_OPTIONS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=2",
]
STOP_TIMEOUT = 15.0
LAUNCHER_DIR = Path(__file__).resolve().parent.parent
# Move the process into each cgroup given before "--", then exec the rest: nspawn
# creates its payload/ and supervisor/ cgroups inside the one it starts in.
JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; done; shift; exec "$@"'
JOIN_CGROUPS = ["sh", "-c", JOIN_SCRIPT, "join-cgroups"]


# --- processes -------------------------------------------------------------


def proc_start_time(pid: int) -> int | None:
    """Start time of a live (non-zombie) PID, used to tell it from a reused PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def host_alive(record: HostRecord) -> bool:
    if record.pid is None:
        return False
    started = proc_start_time(record.pid)
    return started is not None and started == record.pid_start


def reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def container_pid(record: HostRecord) -> int | None:
    """The container's init: the child of nspawn, itself the supervisor's child."""
    if record.pid is None or not host_alive(record):
        return None
    nspawn = first_child(record.pid)
    return first_child(nspawn) if nspawn else None


# --- overlay and per-host files --------------------------------------------


def mount_overlay(record: HostRecord) -> None:
    layer = record.overlay
    for path in (layer.upper, layer.work, layer.merged):
        Path(path).mkdir(parents=True, exist_ok=True)
    if is_mounted(Path(layer.merged)):
        return
    options = f"lowerdir={layer.lower},upperdir={layer.upper},workdir={layer.work}"
    run(["mount", "-t", "overlay", "overlay", "-o", options, layer.merged])


def unmount_overlay(record: HostRecord) -> None:
    merged = Path(record.overlay.merged)
    if is_mounted(merged):
        proc = run(["umount", str(merged)], check=False)
        if proc.returncode != 0:
            run(["umount", "--lazy", str(merged)])


def network_unit(record: HostRecord) -> str:
    prefix_len = record.subnet.split("/")[1]
    return (
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={record.address}/{prefix_len}\n"
        f"Gateway={record.gateway}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def configure_root(record: HostRecord, public_key: str) -> None:
    """Write the host's identity into its overlay (never into the template)."""
    root = Path(record.overlay.merged)
    write_text(root / "etc/hostname", record.name + "\n")
    write_text(
        root / "etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{record.name}\n::1\t\tlocalhost ip6-localhost\n",
    )
    write_text(root / "etc/systemd/network/10-host0.network", network_unit(record))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    write_text(ssh_dir / "authorized_keys", public_key, 0o600)
    for kind in ("ed25519", "ecdsa"):
        key = root / f"etc/ssh/ssh_host_{kind}_key"
        if not key.exists():
            run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    f"root@{record.name}",
                    "-f",
                    str(key),
                ]
            )


# --- boot and halt -------------------------------------------------------


def nspawn_command(record: HostRecord) -> list[str]:
    return [
        "systemd-nspawn",
        "--boot",
        f"--directory={record.overlay.merged}",
        f"--machine={record.machine}",
        f"--hostname={record.name}",
        "--register=no",
        "--keep-unit",
        "--network-veth",
        # A read-only pseudo-terminal: the boot messages reach console_log.
        "--console=read-only",
        "--resolv-conf=copy-host",
        "--link-journal=no",
        "--",
        "systemd.show_status=1",
        "systemd.log_color=0",
        "systemd.status_unit_format=name",
    ]


def supervisor_command(record: HostRecord) -> list[str]:
    prefix_len = record.subnet.split("/")[1]
    return [
        sys.executable,
        "-m",
        "nspawn_launcher.supervisor",
        f"--gateway={record.gateway}/{prefix_len}",
        "--",
        *nspawn_command(record),
    ]


def spawn(record: HostRecord) -> None:
    """Start the host detached, inside its own cgroups; log to console_log.

    The recorded PID is the supervisor's, which runs nspawn and starts it
    again when the host reboots itself.
    """
    paths = [Path(p) for p in record.cgroups]
    cgroups.remove(paths)
    cgroups.create(paths)
    env = cgroups.nspawn_environment()
    env["PYTHONPATH"] = str(LAUNCHER_DIR)
    with open(record.console_log, "a", encoding="utf-8") as console:
        console.write(
            f"\n=== boot {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} ===\n"
        )
        console.flush()
        proc = subprocess.Popen(
            [
                *JOIN_CGROUPS,
                *(str(p) for p in paths),
                "--",
                *supervisor_command(record),
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    record.pid = proc.pid
    record.pid_start = proc_start_time(proc.pid)


def attach_network(record: HostRecord, timeout: float = 20.0) -> None:
    """Find the outer veth end, give it the gateway address and bring it up."""
    try:
        record.veth = network.wait_for_veth(lambda: container_pid(record), timeout)
    except LauncherError as exc:
        raise LauncherError(f"{record.name}: {exc}{console_tail(record)}") from exc
    prefix_len = record.subnet.split("/")[1]
    network.configure_veth(record.veth, f"{record.gateway}/{prefix_len}")


def halt(record: HostRecord, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the supervisor, which has nspawn power the container off.

    After the timeout, SIGKILL it; then SIGKILL whatever PIDs remain in the
    host's own cgroups (nspawn and the container's processes).
    """
    if record.pid is not None and host_alive(record):
        os.kill(record.pid, signal.SIGTERM)
        if not wait_exit(record, timeout):
            log(f"{record.name}: no exit {timeout}s after SIGTERM, sending SIGKILL")
            os.kill(record.pid, signal.SIGKILL)
            wait_exit(record, 5.0)
    if record.pid is not None:
        reap(record.pid)
    paths = [Path(p) for p in record.cgroups]
    cgroups.kill_leftovers(paths)
    cgroups.remove(paths)
    network.delete_link(record.veth)
    record.pid = None
    record.pid_start = None


def wait_exit(record: HostRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.pid is not None:
            reap(record.pid)
        if not host_alive(record):
            return True
        time.sleep(0.1)
    return False


def dispose(record: HostRecord) -> None:
    """Halt the host and release its overlay, links and subnet. Idempotent."""
    halt(record)
    unmount_overlay(record)
    if is_mounted(Path(record.overlay.merged)):
        raise LauncherError(
            f"{record.name}: overlay {record.overlay.merged} still mounted"
        )
    for path in (record.overlay.upper, record.overlay.work, record.overlay.merged):
        remove_tree(Path(path))
    network.release_subnet(record.subnet_reservation)


# --- readiness -------------------------------------------------------------


def ssh_command(record: HostRecord, *remote: str) -> list[str]:
    return [
        "ssh",
        "-i",
        record.ssh_key,
        *SSH_OPTIONS,
        f"root@{record.address}",
        *remote,
    ]


def console_tail(record: HostRecord, lines: int = 25) -> str:
    try:
        text = Path(record.console_log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.replace("\r", "").splitlines()[-lines:])
    return f"\n--- last {lines} lines of {record.console_log} ---\n{tail}"


def not_ready(record: HostRecord, why: str) -> LauncherError:
    return LauncherError(
        f"{record.name} ({record.address}): {why}{console_tail(record)}"
    )


def wait_ssh(record: HostRecord, deadline: float) -> None:
    while True:
        if not host_alive(record):
            raise not_ready(
                record, "systemd-nspawn exited during boot (see its console log)"
            )
        try:
            proc = subprocess.run(
                ssh_command(record, "true"),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if proc.returncode == 0:
                return
            last = proc.stderr.strip()
        except subprocess.TimeoutExpired:
            last = "ssh timed out"
        if time.monotonic() > deadline:
            raise not_ready(
                record, f"ssh did not answer in time (last: {last or 'no output'})"
            )
        time.sleep(0.3)


def wait_system_running(record: HostRecord, deadline: float) -> str:
    left = max(deadline - time.monotonic(), 1.0)
    try:
        proc = subprocess.run(
            ssh_command(record, "systemctl", "is-system-running", "--wait"),
            capture_output=True,
            text=True,
            timeout=left,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise not_ready(record, "systemd did not finish booting in time") from exc
    state = proc.stdout.strip() or proc.stderr.strip()
    if state == "degraded":
        failed = run(
            ssh_command(record, "systemctl", "--failed", "--plain", "--no-legend"),
            check=False,
        ).stdout.strip()
        log(f"{record.name}: degraded; failed units: {failed or '?'}")
    elif state != "running":
        raise not_ready(record, f"systemctl is-system-running says {state!r}")
    return state


def wait_ready(record: HostRecord, deadline: float) -> str:
    wait_ssh(record, deadline)
    return wait_system_running(record, deadline)
