"""Keep one host's systemd-nspawn going across reboots requested inside the host.

nspawn exits with status 133 when the container reboots, and without a
service manager nothing starts it again. This small parent does, and puts
the gateway address back on the new veth link. SIGTERM is passed on to nspawn,
which powers the container off; then this process exits.

Run as: python3 -m nspawn_launcher.supervisor --gateway CIDR -- systemd-nspawn ...
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

from . import network
from .common import LauncherError, first_child

REBOOT_STATUS = 133


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"\n=== {stamp} {message} ===", flush=True)


def reattach(nspawn_pid: int, gateway_cidr: str) -> None:
    """Give the new veth link of a rebooted host its gateway address."""
    try:
        veth = network.wait_for_veth(lambda: first_child(nspawn_pid), 30.0)
        network.configure_veth(veth, gateway_cidr)
    except LauncherError as exc:
        say(f"cannot restore the network after reboot: {exc}")


class Supervisor:
    def __init__(
        self,
        gateway_cidr: str,
        command: list[str],
        on_reboot: Callable[[int, str], None] = reattach,
    ) -> None:
        self.gateway_cidr = gateway_cidr
        self.command = command
        self.on_reboot = on_reboot
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self.forward_stop()

    def forward_stop(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def handle_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.on_signal)

    def run(self) -> int:
        boots = 0
        while True:
            self.child = subprocess.Popen(self.command)
            if self.stopping:
                self.forward_stop()
            elif boots:
                self.on_reboot(self.child.pid, self.gateway_cidr)
            status = self.child.wait()
            if self.stopping or status != REBOOT_STATUS:
                return status
            boots += 1
            say("reboot inside the host: starting it again")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nspawn_launcher.supervisor")
    parser.add_argument("--gateway", required=True, help="address/len for the veth")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    os.environ.pop("PYTHONPATH", None)
    supervisor = Supervisor(args.gateway, command)
    supervisor.handle_signals()
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
