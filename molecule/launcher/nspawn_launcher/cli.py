"""Command line: nspawn_hosts.py up|down|status|stop|start|inventory|build."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import fleet, state, template
from .common import LauncherError, log, require_root, require_tools

DEFAULT_TIMEOUT = 180.0
NEEDS = [
    "systemd-nspawn",
    "nft",
    "ip",
    "ssh",
    "ssh-keygen",
    "mount",
    "umount",
    "nsenter",
]


def host_spec(text: str) -> fleet.HostSpec:
    try:
        return fleet.parse_host_spec(text)
    except LauncherError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nspawn_hosts.py",
        description="Boot Debian test hosts with systemd-nspawn, for Ansible and Molecule.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_state_dir(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(
            "--state-dir",
            required=True,
            type=fleet.state_dir_arg,
            help="directory holding state.json, the ssh key and host disks",
        )
        return cmd

    up = with_state_dir("up", "build templates if needed, boot hosts, wait for ssh")
    up.add_argument("--name", required=True, help="unique name prefix for this run")
    up.add_argument(
        "--host",
        action="append",
        required=True,
        metavar="NAME[:RELEASE]",
        type=host_spec,
        help=f"a host; RELEASE is one of {', '.join(template.RELEASES)}",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for all hosts to be ready (default %(default)s)",
    )
    with_state_dir("down", "stop every host and remove all it used (idempotent)")
    status = with_state_dir("status", "show the hosts of a run")
    status.add_argument("--json", action="store_true", help="print the state file")
    for verb in ("stop", "start"):
        cmd = with_state_dir(verb, f"{verb} one host; its disk persists")
        cmd.add_argument("host", help="host name")
        if verb == "start":
            cmd.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    with_state_dir("inventory", "rewrite STATE_DIR/inventory.yml")
    build = sub.add_parser("build", help="build (or reuse) the cached root filesystems")
    build.add_argument(
        "release", nargs="*", help=f"any of {', '.join(template.RELEASES)}"
    )
    build.add_argument(
        "--prune", action="store_true", help="delete templates of older recipes"
    )
    return parser


def cmd_up(args: argparse.Namespace) -> None:
    require_tools(NEEDS + ["debootstrap"])
    with state.locked(args.state_dir):
        try:
            fleet.up(args.name, args.host, args.state_dir, args.timeout)
        except (LauncherError, KeyboardInterrupt):
            hint_cleanup(args.state_dir, args.name)
            raise


def hint_cleanup(state_dir: Path, prefix: str) -> None:
    """After a failed up, say how to clean up, if this run left anything."""
    left = state.load(state_dir)
    if left is not None and left.prefix == prefix:
        log(f"up failed; clean up with: {sys.argv[0]} down --state-dir {state_dir}")


def cmd_down(args: argparse.Namespace) -> None:
    require_tools(NEEDS)
    with state.locked(args.state_dir):
        run_state = state.load(args.state_dir)
        if run_state is None:
            log(f"nothing to tear down in {args.state_dir}")
            return
        fleet.down(run_state)
        log(f"run {run_state.prefix} torn down")


def cmd_status(args: argparse.Namespace) -> None:
    run_state = state.require(args.state_dir)
    if args.json:
        print(json.dumps(dataclasses.asdict(run_state), indent=2))
        return
    print("\n".join(fleet.status_lines(run_state)))


def cmd_stop(args: argparse.Namespace) -> None:
    with state.locked(args.state_dir):
        fleet.stop_host(state.require(args.state_dir), args.host)


def cmd_start(args: argparse.Namespace) -> None:
    require_tools(NEEDS)
    with state.locked(args.state_dir):
        fleet.start_host(state.require(args.state_dir), args.host, args.timeout)


def cmd_inventory(args: argparse.Namespace) -> None:
    print(fleet.write_inventory(state.require(args.state_dir)))


def cmd_build(args: argparse.Namespace) -> None:
    require_tools(["debootstrap", "systemctl"])
    for release in args.release:
        print(template.ensure_template(release))
    if args.prune:
        for path in template.prune():
            log(f"removed {path}")


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "stop": cmd_stop,
    "start": cmd_start,
    "inventory": cmd_inventory,
    "build": cmd_build,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_root()
        COMMANDS[args.command](args)
    except LauncherError as exc:
        print(f"nspawn-hosts: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "nspawn-hosts: interrupted; state is saved, 'down' cleans up",
            file=sys.stderr,
        )
        return 130
    return 0
