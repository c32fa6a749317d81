"""Free subnets, veth discovery, forwarding and the per-run nftables table."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import LauncherError, run

REGISTRY = Path("/run/people-counter-test")
SUBNETS = REGISTRY / "subnets"
ROUTE_TYPES = {
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "throw",
    "unreachable",
    "prohibit",
    "blackhole",
    "nat",
    "anycast",
}
IPv4Net = ipaddress.IPv4Network
NAT_CHAIN = "{ type nat hook postrouting priority srcnat; policy accept; }"


@contextmanager
def registry_lock() -> Iterator[None]:
    """Serialise subnet and prefix allocation between concurrent launchers."""
    REGISTRY.mkdir(parents=True, exist_ok=True)
    with open(REGISTRY / "alloc.lock", "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def addresses_in_use() -> list[IPv4Net]:
    nets: list[IPv4Net] = []
    for line in run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        match = re.search(r"\binet (\S+)", line)
        if match:
            nets.append(ipaddress.IPv4Interface(match.group(1)).network)
    return nets


def routes_in_use() -> list[IPv4Net]:
    nets: list[IPv4Net] = []
    for line in run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        dest = tokens[1] if tokens[0] in ROUTE_TYPES and len(tokens) > 1 else tokens[0]
        if dest == "default":
            continue
        try:
            nets.append(IPv4Net(dest, strict=False))
        except ValueError:
            continue
    return nets


def nameservers() -> list[IPv4Net]:
    nets: list[IPv4Net] = []
    try:
        text = Path("/etc/resolv.conf").read_text(encoding="utf-8")
    except OSError:
        return nets
    for match in re.finditer(
        r"^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)", text, re.MULTILINE
    ):
        nets.append(IPv4Net(f"{match.group(1)}/32"))
    return nets


def reserved() -> list[IPv4Net]:
    SUBNETS.mkdir(parents=True, exist_ok=True)
    return [IPv4Net(path.name.replace("_", "/")) for path in SUBNETS.iterdir()]


def candidates() -> Iterator[IPv4Net]:
    for second in range(77, 255):
        for third in range(256):
            yield IPv4Net(f"10.{second}.{third}.0/24")


def reserve_subnet(owner: str) -> tuple[IPv4Net, Path]:
    """Pick a /24 that no address, route, nameserver or other run uses; reserve it."""
    with registry_lock():
        taken = addresses_in_use() + routes_in_use() + nameservers() + reserved()
        net = first_free(taken)
        marker = SUBNETS / str(net).replace("/", "_")
        marker.write_text(owner + "\n", encoding="utf-8")
        return net, marker


def first_free(taken: list[IPv4Net]) -> IPv4Net:
    for net in candidates():
        if not any(net.overlaps(other) for other in taken):
            return net
    raise LauncherError("no free 10.x.y.0/24 subnet left for a test host")


def release_subnet(marker: str | None) -> None:
    if marker:
        Path(marker).unlink(missing_ok=True)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def links_with_prefix(prefix: str) -> list[str]:
    return sorted(
        p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(prefix)
    )


def host_side_veth(container_pid: int) -> str | None:
    """Name of the outer end of the container's host0 veth, or None if not there yet."""
    proc = run(
        [
            "nsenter",
            "-t",
            str(container_pid),
            "-n",
            "ip",
            "-o",
            "link",
            "show",
            "host0",
        ],
        check=False,
    )
    match = re.search(r"host0@if(\d+)", proc.stdout)
    if not match:
        return None
    index = match.group(1)
    for link in Path("/sys/class/net").iterdir():
        try:
            if (link / "ifindex").read_text().strip() == index:
                return link.name
        except OSError:
            continue
    return None


def configure_veth(name: str, gateway_cidr: str) -> None:
    run(["ip", "addr", "replace", gateway_cidr, "dev", name])
    run(["ip", "link", "set", name, "up"])


def delete_link(name: str | None) -> None:
    if name and link_exists(name):
        run(["ip", "link", "delete", name], check=False)


def enable_forwarding() -> None:
    """Turn on IPv4 forwarding; it is left on at teardown since others may rely on it."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def forward_drop_chains() -> list[str]:
    """Base chains that drop forwarded packets by default (Docker does this)."""
    ruleset = run(["nft", "list", "ruleset"], check=False).stdout
    found = []
    table = chain = ""
    for line in ruleset.splitlines():
        words = line.split()
        if words[:1] == ["table"] and len(words) >= 3:
            table = " ".join(words[1:3])
        elif words[:1] == ["chain"] and len(words) >= 2:
            chain = words[1]
        elif "hook forward" in line and "policy drop" in line:
            found.append(f"{table} {chain}")
    return found


def nft_table_exists(table: str) -> bool:
    return run(["nft", "list", "table", "ip", table], check=False).returncode == 0


def nft_ensure_masquerade(table: str, subnets: dict[str, str]) -> None:
    """Create the run's table with one masquerade rule per host subnet (idempotent)."""
    lines = [
        f"add table ip {table}",
        f"add chain ip {table} postrouting {NAT_CHAIN}",
        f"flush chain ip {table} postrouting",
    ]
    for host, subnet in sorted(subnets.items()):
        lines.append(
            f"add rule ip {table} postrouting ip saddr {subnet} ip daddr != {subnet} "
            f'masquerade comment "{host}"'
        )
    run(["nft", "-f", "-"], input_text="\n".join(lines) + "\n")


def nft_delete_table(table: str | None) -> None:
    if table and nft_table_exists(table):
        run(["nft", "delete", "table", "ip", table])


def wait_for_veth(container_pid_of: Callable[[], int | None], timeout: float) -> str:
    """Poll for the container's PID, then for its veth, until both show up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = container_pid_of()
        if pid and os.path.exists(f"/proc/{pid}"):
            name = host_side_veth(pid)
            if name:
                return name
        time.sleep(0.1)
    raise LauncherError("the container's veth link did not appear")
