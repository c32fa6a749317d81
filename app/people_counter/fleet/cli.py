"""people-counter-fleet: serve the central fleet page, or check its config.

people-counter-fleet -c /etc/people-counter/fleet.yml   serve (the default command)
people-counter-fleet check-config FILE                  validate a config file

The login's password hash is made with `people-counter-dashboard hash-password`: the same form.
Only serving loads the web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from people_counter.cli import version
from people_counter.command_runner import run_command
from people_counter.dashboard.config import read_password_hash
from people_counter.fleet.config import DEFAULT_FLEET_CONFIG, load_fleet_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="people-counter-fleet", description="The central page of a fleet.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_FLEET_CONFIG, help="fleet page config (YAML)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="serve the fleet page (the default)")
    check_p = sub.add_parser("check-config", help="validate a fleet page config file")
    check_p.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    def body() -> int:
        if args.command == "check-config":
            read_password_hash(load_fleet_config(args.file))  # type: ignore[arg-type]  # reads cfg.auth alone
            print(f"{args.file}: ok")
            return 0
        cfg = load_fleet_config(args.config)
        from people_counter.fleet.app import serve  # the web stack, only when serving

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(cfg))
        return 0

    return run_command("people-counter-fleet", args.verbose, body)


if __name__ == "__main__":
    sys.exit(main())
